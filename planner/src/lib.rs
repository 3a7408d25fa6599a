//! The planner: a pure function from a store snapshot to every node's desired state.
