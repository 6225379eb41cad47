//! Test support shared by every crate's tests (feature `testing`): never compiled into the
//! daemon.
//!
//! What a test waits for, it waits for with [`eventually`]: one poller with a deadline and a
//! message that says what never happened, instead of hand-written sleep loops.

use std::future::Future;
use std::time::Duration;

/// How long [`eventually`] waits unless told otherwise: generous, because CI machines are
/// slow and a passing test never waits this long.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// Calls `check` until it returns `Some`, every 20 ms, for at most `deadline`; returns that
/// value. Panics naming `what` when the deadline passes, with the last `Debug` of what
/// `check` saw if it reported one through `Err`.
///
/// `check` returns `Ok(Some(value))` when done, `Ok(None)` to try again, and `Err(last)` to
/// try again while remembering what it saw (shown if the wait fails).
pub async fn eventually_within<T, S, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    S: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, S>>,
{
    let start = tokio::time::Instant::now();
    let mut last: Option<S> = None;
    loop {
        match check().await {
            Ok(Some(value)) => return value,
            Ok(None) => {}
            Err(seen) => last = Some(seen),
        }
        if start.elapsed() >= deadline {
            match last {
                Some(seen) => panic!("{what}: not within {deadline:?}; last seen: {seen:?}"),
                None => panic!("{what}: not within {deadline:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`eventually_within`] with [`DEFAULT_DEADLINE`] and a check that only says yes or no.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(what, DEFAULT_DEADLINE, || {
        let next = check();
        async move { Ok::<_, ()>(next.await) }
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn eventually_returns_the_first_value_that_arrives() {
        let calls = Arc::new(AtomicU32::new(0));
        let value = eventually("the third call", || {
            let calls = calls.clone();
            async move {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                (n == 3).then_some(n)
            }
        })
        .await;
        assert_eq!(value, 3);
    }

    #[tokio::test]
    async fn eventually_within_says_what_never_happened_and_what_it_last_saw() {
        let waited = tokio::spawn(eventually_within(
            "a value that never comes",
            Duration::from_millis(60),
            || async { Err::<Option<()>, _>("still nothing") },
        ))
        .await;
        let panic = waited.expect_err("the wait must fail").into_panic();
        let message = panic
            .downcast_ref::<String>()
            .expect("a formatted panic message");
        assert!(message.contains("a value that never comes"), "{message}");
        assert!(message.contains("still nothing"), "{message}");
    }
}
