//! Kong's aws-lambda plugin (kong-reference.md 4.6) on aws-sdk-lambda: the route's answer
//! comes from invoking a Lambda function instead of an upstream. It lives apart from the
//! bundled plugins because it brings the AWS SDK; the binary adds [`SPEC`] to its catalog.
//!
//! Beyond Kong OSS it builds API Gateway HTTP API (payload 2.0) events as well as REST (1.0)
//! ones (`awsgateway_compatible_payload_version`, as Kong Enterprise 3.12 does), and fills
//! `requestContext.stage` and `requestContext.authorizer`, which Kong leaves out. `resource`
//! is API Gateway's template (`/users/{id}`) where Kong puts the route's regex, and an
//! argument without `=` is `""` where Kong puts `true`: functions moved from API Gateway
//! (the reference deployment's) read them so, and the published event types hold strings.

mod client;
mod config;
mod credentials;
mod event;
mod handler;
mod response;
mod schema;

use gangway_pipeline::catalog::Spec;

/// Kong's name.
pub const NAME: &str = "aws-lambda";
/// Kong's PRIORITY.
pub const PRIORITY: i32 = 750;

/// The plugin, for the catalog.
pub static SPEC: Spec = Spec {
    name: NAME,
    priority: PRIORITY,
    schema: schema::schema,
    build: handler::build,
};
