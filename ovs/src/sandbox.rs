//! Test sandbox.
