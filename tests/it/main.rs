//! The integration tests, one binary (each test file its own binary linked
//! russh again: over half of a bare `cargo test` on two cores), a module
//! per topic. Tests that count the process's descriptors or set global
//! state run again in a process of their own (`support::rerun_alone`).
//!
//! ```text
//! cargo test --test it                       # all of them
//! cargo test --test it process::             # one topic
//! cargo test --test it -- --ignored soak::   # the ignored ones of a topic
//! ```

mod support;

/// Counts what each thread allocates, for the tests that measure what a
/// call keeps (`ssh_config_memory`, `hostile_config`); per thread, so the
/// tests beside them do not disturb the count.
#[global_allocator]
static COUNTING: support::alloc::Counting = support::alloc::Counting;

mod auth_methods;
mod bad_input;
mod certificates;
mod dead_peers;
mod dial_example;
mod examples;
mod exec;
mod fleet;
mod fleet_example;
mod forward;
mod happy_eyeballs;
mod hostile_config;
mod jump_hosts;
mod jump_identities;
mod metrics;
mod misbehaving_peers;
mod no_leaks;
mod openssh;
mod pool;
mod pool_with;
mod process;
mod proxy_command;
mod resolver;
mod russh_server;
mod secrets;
mod sftp;
mod soak;
mod socket_options;
mod ssh_config;
mod ssh_config_differential;
mod ssh_config_memory;
mod trust;
mod trust_differential;
