//! The domain layer between HTTP and the store: one module per resource holding its rules
//! (who may do what, validation), knowing nothing of HTTP.

pub mod quotas;
