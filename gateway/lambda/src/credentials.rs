//! Credentials kept fresh ahead of their expiry. The SDK's own cache reloads expiring
//! credentials on the request that finds them expiring, which then waits for STS, IMDS or the
//! ECS endpoint; here a request that finds them close to expiry still uses them and starts
//! one refresh in the background. Only a request that finds none (the first, or after every
//! refresh failed until expiry) waits for a load.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{self, ProvideCredentials, SharedCredentialsProvider, future};

/// How long before expiry a refresh starts: temporary credentials live an hour or more, and
/// five minutes leave room for a slow source.
pub(crate) const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// Credentials this close to expiry are not used at all: a request signed with them could
/// arrive after they expire.
const USABLE_UNTIL: Duration = Duration::from_secs(10);

/// A credentials source behind a cache refreshed in the background.
#[derive(Debug)]
pub(crate) struct Refreshing {
    source: SharedCredentialsProvider,
    state: Arc<Mutex<State>>,
    /// Held while a request loads credentials it must wait for, so that requests arriving
    /// together load them once.
    loading: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct State {
    current: Option<Credentials>,
    refreshing: bool,
}

/// What the cache can do for a request now.
enum Cached {
    /// Fresh: use them.
    Fresh(Credentials),
    /// Usable, but a refresh is due; `start` when this request should start it.
    Expiring {
        credentials: Credentials,
        start: bool,
    },
    /// None usable: the request must load them.
    Missing,
}

impl Refreshing {
    pub(crate) fn new(source: SharedCredentialsProvider) -> Refreshing {
        Refreshing {
            source,
            state: Arc::default(),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    fn cached(&self) -> Cached {
        let now = SystemTime::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(current) = state.current.clone() else {
            return Cached::Missing;
        };
        let left = |c: &Credentials| {
            c.expiry()
                .map(|e| e.duration_since(now).unwrap_or_default())
        };
        match left(&current) {
            None => Cached::Fresh(current),
            Some(left) if left > REFRESH_BEFORE => Cached::Fresh(current),
            Some(left) if left > USABLE_UNTIL => {
                let start = !state.refreshing;
                state.refreshing = true;
                Cached::Expiring {
                    credentials: current,
                    start,
                }
            }
            Some(_) => Cached::Missing,
        }
    }

    /// Loads credentials in a task of the current runtime; the cache takes them when they
    /// come. A failure keeps the current ones (and is logged), to be tried again by the
    /// next request.
    fn refresh_in_background(&self) {
        let source = self.source.clone();
        let state = self.state.clone();
        tokio::spawn(async move {
            let loaded = source.provide_credentials().await;
            let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
            state.refreshing = false;
            match loaded {
                Ok(fresh) => state.current = Some(fresh),
                Err(e) => tracing::warn!(error = %e, "aws-lambda: refreshing credentials failed"),
            }
        });
    }

    async fn load(&self) -> provider::Result {
        match self.cached() {
            Cached::Fresh(credentials) => return Ok(credentials),
            Cached::Expiring { credentials, start } => {
                if start {
                    self.refresh_in_background();
                }
                return Ok(credentials);
            }
            Cached::Missing => {}
        }
        let _loading = self.loading.lock().await;
        // Another request may have loaded them while this one waited.
        if let Cached::Fresh(credentials) = self.cached() {
            return Ok(credentials);
        }
        let loaded = self.source.provide_credentials().await?;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.current = Some(loaded.clone());
        Ok(loaded)
    }
}

impl ProvideCredentials for Refreshing {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.load())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A source that hands out credentials `key-<n>` expiring `lifetime` after each load.
    #[derive(Debug)]
    struct Counting {
        loads: Arc<AtomicUsize>,
        lifetime: Duration,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.loads.fetch_add(1, Ordering::SeqCst) + 1;
            future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("key-{n}"),
                "secret",
                None,
                Some(SystemTime::now() + self.lifetime),
                "test",
            )))
        }
    }

    fn refreshing(lifetime: Duration) -> (Refreshing, Arc<AtomicUsize>) {
        let loads = Arc::new(AtomicUsize::new(0));
        let source = Counting {
            loads: loads.clone(),
            lifetime,
        };
        (
            Refreshing::new(SharedCredentialsProvider::new(source)),
            loads,
        )
    }

    #[tokio::test]
    async fn fresh_credentials_are_loaded_once() {
        let (cache, loads) = refreshing(Duration::from_secs(3600));
        for _ in 0..3 {
            let c = cache.provide_credentials().await.expect("credentials");
            assert_eq!(c.access_key_id(), "key-1");
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn expiring_credentials_serve_while_one_refresh_runs_in_the_background() {
        // Inside the refresh window from the start.
        let (cache, loads) = refreshing(REFRESH_BEFORE - Duration::from_secs(60));
        let first = cache.provide_credentials().await.expect("credentials");
        assert_eq!(first.access_key_id(), "key-1");
        // These find them expiring: served from the cache, one refresh started.
        for _ in 0..3 {
            let c = cache.provide_credentials().await.expect("credentials");
            assert_eq!(c.access_key_id(), "key-1");
        }
        tokio::task::yield_now().await;
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while loads.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(loads.load(Ordering::SeqCst), 2, "one background refresh");
        let next = cache.provide_credentials().await.expect("credentials");
        assert_eq!(next.access_key_id(), "key-2");
    }

    #[tokio::test]
    async fn credentials_about_to_expire_are_not_used() {
        let (cache, loads) = refreshing(USABLE_UNTIL / 2);
        cache.provide_credentials().await.expect("credentials");
        let c = cache.provide_credentials().await.expect("credentials");
        assert_eq!(c.access_key_id(), "key-2", "loaded again, not served");
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }
}
