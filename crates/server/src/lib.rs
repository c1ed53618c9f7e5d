//! The gpdiag server: configuration, start-up, the protocol layer (HTTP, authentication,
//! throttling, rendering) and the actions behind it.

pub mod actions;
pub mod app;
pub mod config;
pub mod links;
pub mod metrics;
pub mod protocol;
pub mod registry;
pub mod state;

pub use app::Application;
pub use config::Config;
