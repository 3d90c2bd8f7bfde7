//! The process's background work (saga worker, outbox relay, reservation
//! sweeper, stock cache reconciler, plugin registry poller), started
//! through here so that it can be stopped as one: `commerce bench` stops
//! its in-process service's before dropping the schema they work on.

use std::future::Future;
use std::sync::Mutex;

use tokio::task::{AbortHandle, JoinHandle};

#[derive(Default)]
pub struct Background {
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Background {
    /// Runs `task` on the runtime until it ends or [`Background::stop`].
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(task);
        self.track(&handle);
    }

    /// Stops `handle`'s task with the others.
    pub fn track<T>(&self, handle: &JoinHandle<T>) {
        self.lock().push(handle.abort_handle());
    }

    /// Stops every task started here.
    pub fn stop(&self) {
        for task in self.lock().drain(..) {
            task.abort();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<AbortHandle>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn stop_ends_every_task() {
        let background = Background::default();
        let ticks = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let ticks = ticks.clone();
            background.spawn(async move {
                loop {
                    ticks.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        background.stop();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let stopped_at = ticks.load(Ordering::SeqCst);
        assert!(stopped_at > 0);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(
            ticks.load(Ordering::SeqCst),
            stopped_at,
            "a task still runs"
        );
    }
}
