//! Compiles a validated config into a snapshot.
