//! The plugin: access builds the payload and starts the invocation on the worker; resume
//! turns its outcome into the client's response.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use gangway_pipeline::Plugin;
use gangway_pipeline::catalog::{Build, BuildResult};
use gangway_pipeline::context::AccessCtx;
use gangway_pipeline::flow::{Flow, Pending};

use super::client::ClientKey;
use super::config::LambdaConfig;
use super::response::{Failure, Invoked};
use super::{client, event, response};

struct AwsLambda {
    conf: Arc<LambdaConfig>,
    /// Which worker client invokes (`None` without a region: every request is Kong's 500).
    client: Option<Arc<ClientKey>>,
    /// `client_body_buffer_size`: a longer body is one nginx writes to a file, which Kong
    /// leaves out of forwarded and API Gateway payloads under `skip_large_bodies`.
    body_buffer_size: usize,
}

/// What the invocation future hands to `resume`.
type Outcome = (Result<Invoked, Failure>, Duration);

/// Builds an instance from its validated config.
pub(crate) fn build(build: &Build<'_>) -> BuildResult {
    let conf: LambdaConfig = serde_json::from_value::<LambdaConfig>(Value::clone(build.config))
        .map_err(|e| vec![(String::new(), e.to_string())])?;
    Ok(Box::new(AwsLambda {
        client: ClientKey::of(&conf).map(Arc::new),
        conf: Arc::new(conf),
        body_buffer_size: build.client_body_buffer_size,
    }))
}

impl Plugin for AwsLambda {
    fn needs_body(&self) -> bool {
        true
    }

    fn access(&self, ctx: &mut AccessCtx<'_>) -> Flow {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let body = ctx.body().unwrap_or_default();
        let raw_body = if self.conf.skip_large_bodies && body.len() > self.body_buffer_size {
            tracing::warn!(
                bytes = body.len(),
                client_body_buffer_size = self.body_buffer_size,
                "aws-lambda: request body was buffered to disk, too large (skip_large_bodies)"
            );
            None
        } else {
            Some(body)
        };
        let payload = event::payload(&self.conf, ctx, raw_body, now_ms);
        let conf = self.conf.clone();
        let key = self.client.clone();
        Flow::Await(Pending::new(async move {
            let started = Instant::now();
            let outcome = client::invoke(&conf, key.as_deref(), payload).await;
            (outcome, started.elapsed())
        }))
    }

    fn resume(&self, _ctx: &mut AccessCtx<'_>, output: Box<dyn Any>) -> Flow {
        match output.downcast::<Outcome>() {
            Ok(outcome) => {
                let (outcome, waited) = *outcome;
                Flow::Respond(response::respond(&self.conf, outcome, waited))
            }
            Err(_) => Flow::error(500, "An unexpected error occurred"),
        }
    }
}
