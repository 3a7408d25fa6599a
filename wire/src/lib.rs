//! Wire types shared by the controller, the agent and the CLI.
