//! Settings. OWNER: settings helper.
