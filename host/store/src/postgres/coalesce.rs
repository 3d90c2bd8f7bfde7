//! Read coalescing: point reads by key that arrive while one query is
//! being answered wait for the next, which fetches all their keys at once
//! (`= ANY($1)`). Under load this turns a round trip per request into one
//! per batch, as the group commit does for writes; alone, a read goes out
//! at once.
//!
//! A read queued after a write committed is answered by a query that
//! starts after it, so callers still read their own writes.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::Hash;

use tokio::sync::{mpsc, oneshot};

use commerce_app::ports::StoreError;

/// Requests answered by one query at most.
const MAX_REQUESTS: usize = 512;

type Reply<V> = oneshot::Sender<Result<Vec<V>, StoreError>>;

/// The queue in front of one kind of read.
pub(super) struct Coalescer<K, V> {
    queue: mpsc::Sender<(Vec<K>, Reply<V>)>,
}

impl<K, V> Clone for Coalescer<K, V> {
    fn clone(&self) -> Self {
        Coalescer {
            queue: self.queue.clone(),
        }
    }
}

impl<K, V> Coalescer<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + 'static,
{
    /// Starts the reader: `fetch` reads the rows of a set of keys, `key_of`
    /// says which key a row answers. It runs until every clone is dropped.
    pub fn start<F, Fut>(fetch: F, key_of: fn(&V) -> K) -> Self
    where
        F: Fn(Vec<K>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<V>, StoreError>> + Send,
    {
        let (queue, mut requests) = mpsc::channel::<(Vec<K>, Reply<V>)>(2 * MAX_REQUESTS);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_REQUESTS);
            while requests.recv_many(&mut batch, MAX_REQUESTS).await > 0 {
                let keys: Vec<K> = batch
                    .iter()
                    .flat_map(|(keys, _)| keys.iter().cloned())
                    .collect::<HashSet<K>>()
                    .into_iter()
                    .collect();
                match fetch(keys).await {
                    Ok(rows) => {
                        let found: HashMap<K, V> =
                            rows.into_iter().map(|row| (key_of(&row), row)).collect();
                        for (keys, reply) in batch.drain(..) {
                            let rows = keys.iter().filter_map(|k| found.get(k).cloned()).collect();
                            let _ = reply.send(Ok(rows));
                        }
                    }
                    Err(e) => {
                        for (_, reply) in batch.drain(..) {
                            let _ = reply.send(Err(shared(&e)));
                        }
                    }
                }
            }
        });
        Coalescer { queue }
    }

    /// The rows of `keys` that exist, in the order of `keys`.
    pub async fn get(&self, keys: Vec<K>) -> Result<Vec<V>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let gone = || StoreError::Unavailable(anyhow::anyhow!("the store's reader has stopped"));
        self.queue.send((keys, reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// The error of a query, for each of the requests it answered.
fn shared(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(e) => StoreError::Unavailable(anyhow::anyhow!("{e:#}")),
        other => StoreError::Unexpected(anyhow::anyhow!("{other:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_reads_share_a_query_and_each_gets_its_own_rows() {
        let queries = Arc::new(AtomicUsize::new(0));
        let counted = queries.clone();
        let reader = Coalescer::start(
            move |keys: Vec<u32>| {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    // Only even keys exist.
                    Ok(keys
                        .into_iter()
                        .filter(|k| k % 2 == 0)
                        .map(|k| (k, format!("row {k}")))
                        .collect())
                }
            },
            |row: &(u32, String)| row.0,
        );
        let mut tasks = Vec::new();
        for i in 0..50u32 {
            let reader = reader.clone();
            tasks.push(tokio::spawn(async move {
                (i, reader.get(vec![i, i + 1, 1000 + i]).await.unwrap())
            }));
        }
        for task in tasks {
            let (i, rows) = task.await.unwrap();
            let keys: Vec<u32> = rows.iter().map(|r| r.0).collect();
            let want: Vec<u32> = [i, i + 1, 1000 + i]
                .into_iter()
                .filter(|k| k % 2 == 0)
                .collect();
            assert_eq!(keys, want);
            assert!(rows.iter().all(|(k, v)| *v == format!("row {k}")));
        }
        let n = queries.load(Ordering::SeqCst);
        assert!(n < 10, "50 concurrent reads took {n} queries");
    }

    #[tokio::test]
    async fn a_failed_query_fails_each_of_its_reads() {
        let reader = Coalescer::start(
            |_keys: Vec<u32>| async {
                Err::<Vec<u32>, _>(StoreError::Unavailable(anyhow::anyhow!("down")))
            },
            |row: &u32| *row,
        );
        let (a, b) = tokio::join!(reader.get(vec![1]), reader.get(vec![2]));
        assert!(matches!(a, Err(StoreError::Unavailable(_))));
        assert!(matches!(b, Err(StoreError::Unavailable(_))));
    }
}
