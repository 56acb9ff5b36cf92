//! A map of once-cells keyed by digest: the first caller for a key does the
//! work, callers that arrive meanwhile wait for it, and a failure leaves the
//! cell empty so that the next caller (a retry, another target) tries again.
//! The pusher uses it for "each blob at most once per registry", the remote
//! image for "each blob fetched at most once per run".

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

pub struct OnceMap<K, V> {
    cells: Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K, V> Default for OnceMap<K, V> {
    fn default() -> Self {
        OnceMap {
            cells: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> OnceMap<K, V> {
    fn cell(&self, key: &K) -> Arc<OnceCell<V>> {
        match self.cells.lock() {
            Ok(mut m) => m.entry(key.clone()).or_default().clone(),
            // A poisoned map only loses sharing, never correctness.
            Err(_) => Arc::new(OnceCell::new()),
        }
    }

    /// The value for `key`, computed by `init` unless a previous call
    /// succeeded (then `init` is not called).
    pub async fn get_or_try_init<E, F, Fut>(&self, key: &K, init: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let cell = self.cell(key);
        cell.get_or_try_init(init).await.cloned()
    }

    /// The value for `key` when a call succeeded.
    pub fn get(&self, key: &K) -> Option<V> {
        let m = self.cells.lock().ok()?;
        m.get(key).and_then(|c| c.get().cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_failure_is_forgotten_and_a_success_done_once() {
        let map: OnceMap<&str, u32> = OnceMap::default();
        let calls = AtomicUsize::new(0);
        let fail = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<u32, &str>("boom")
        };
        assert_eq!(map.get_or_try_init(&"a", fail).await, Err("boom"));
        assert_eq!(map.get(&"a"), None);
        let ok = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<u32, &str>(7)
        };
        assert_eq!(map.get_or_try_init(&"a", ok).await, Ok(7));
        assert_eq!(map.get_or_try_init(&"a", ok).await, Ok(7));
        assert_eq!(map.get_or_try_init(&"a", fail).await, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(map.get(&"a"), Some(7));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_call() {
        let map: Arc<OnceMap<u8, u8>> = Arc::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (map, calls) = (map.clone(), calls.clone());
                tokio::spawn(async move {
                    map.get_or_try_init(&1, || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        Ok::<u8, ()>(9)
                    })
                    .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(9));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
