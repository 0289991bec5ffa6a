//! Kong-compatible plugins and the pieces they share.
pub mod template;
