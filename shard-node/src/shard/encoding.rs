//! A document's tokens from one form to another: vectors encoded by a codec (with the
//! originals kept when the shard keeps them), and stored tokens back to vectors.

use std::borrow::Cow;

use half::f16;
use half::slice::HalfFloatSliceExt;

use super::Shard;
use crate::codec::Codec;
use crate::store::{Store, Tokens};
use crate::Result;

/// The codecs documents are encoded by: the current one, and others read from the store the
/// first time a document needs one (documents left on another generation by an interrupted
/// retraining, or kept without originals), each read once.
pub(super) struct Codecs<'a> {
    store: &'a Store,
    current: Option<(u32, &'a Codec)>,
    others: Vec<(u32, Codec)>,
}

impl<'a> Codecs<'a> {
    pub(super) fn new(store: &'a Store, current: Option<(u32, &'a Codec)>) -> Codecs<'a> {
        Codecs { store, current, others: Vec::new() }
    }

    /// Reads the codec `tokens` need to be decoded, if it is not at hand yet.
    pub(super) fn prepare(&mut self, tokens: &Tokens) -> Result<()> {
        if let Tokens::Encoded { codec: g, originals: None, .. } = tokens {
            if self.current.is_none_or(|(c, _)| c != *g) && self.others.iter().all(|(o, _)| o != g) {
                self.others.push((*g, self.store.codec(*g)?));
            }
        }
        Ok(())
    }

    /// The codec of generation `g`, once `prepare`d.
    pub(super) fn codec(&self, g: u32) -> &Codec {
        match self.current {
            Some((c, codec)) if c == g => codec,
            _ => &self.others.iter().find(|(o, _)| *o == g).expect("prepared").1,
        }
    }

    /// `tokens`' vectors (`vectors`), reading their codec first if need be.
    pub(super) fn vectors<'t>(&mut self, tokens: &'t Tokens) -> Result<Cow<'t, [f32]>> {
        self.prepare(tokens)?;
        Ok(vectors(tokens, |g| self.codec(g)))
    }
}

impl Shard {
    /// Encodes documents (`vectors[i]`, `[n_i, dim]`) with `codec` of `generation`, in one call
    /// (nearest-centroid search is a matrix product that pays its set-up once), keeping their
    /// originals when the shard keeps them: `originals[i]` where given (already f16), else the
    /// vectors themselves.
    pub(super) fn encode(
        &self,
        codec: &Codec,
        generation: u32,
        vectors: &[Cow<'_, [f32]>],
        originals: &[Option<&[f16]>],
    ) -> Result<Vec<Tokens>> {
        self.in_background(|| self.encode_here(codec, generation, vectors, originals))
    }

    fn encode_here(
        &self,
        codec: &Codec,
        generation: u32,
        vectors: &[Cow<'_, [f32]>],
        originals: &[Option<&[f16]>],
    ) -> Result<Vec<Tokens>> {
        let all: Vec<f32> = vectors.iter().flat_map(|v| v.iter().copied()).collect();
        let (codes, residuals) = codec.encode(&all)?;
        let (mut at, bytes, dim) = (0, codec.residual_bytes(), self.config.dim);
        Ok(vectors
            .iter()
            .zip(originals)
            .map(|(v, given)| {
                let n = v.len() / dim;
                let originals = self.config.keep_originals.then(|| match given {
                    Some(given) => given.to_vec(),
                    None => v.iter().map(|&x| f16::from_f32(x)).collect(),
                });
                let tokens = Tokens::Encoded {
                    codec: generation,
                    codes: codes[at..at + n].to_vec(),
                    residuals: residuals[at * bytes..(at + n) * bytes].to_vec(),
                    originals,
                };
                at += n;
                tokens
            })
            .collect())
    }
}

impl Shard {
    /// Runs `work` on the encoding pool, below the searches' CPU priority (`background_nice`,
    /// `background_idle`): a write's CPU work (encoding, and copying the runs it changes) then leaves the cores to
    /// searches. Never for sled calls (see `exact_scores`).
    pub(super) fn in_background<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        match encoding_pool(self.config.background()) {
            Some(pool) => pool.install(work),
            None => work(),
        }
    }
}

/// A document's vectors `[n, dim]` as best known: raw, the originals, or else decoded by its
/// codec (`codec_of` its generation).
pub(super) fn vectors<'a, 'c>(tokens: &'a Tokens, codec_of: impl Fn(u32) -> &'c Codec) -> Cow<'a, [f32]> {
    match tokens {
        Tokens::Raw(v) => Cow::Borrowed(v),
        Tokens::Encoded { originals: Some(o), .. } => {
            let mut out = vec![0.0f32; o.len()];
            o.convert_to_f32_slice(&mut out);
            Cow::Owned(out)
        }
        Tokens::Encoded { codec, codes, residuals, originals: None } => {
            Cow::Owned(decode_all(codec_of(*codec), codes, residuals))
        }
    }
}

pub(super) fn decode_all(codec: &Codec, codes: &[u32], residuals: &[u8]) -> Vec<f32> {
    let (dim, bytes) = (codec.dim, codec.residual_bytes());
    let mut out = vec![0.0f32; codes.len() * dim];
    for ((&c, r), v) in codes.iter().zip(residuals.chunks_exact(bytes)).zip(out.chunks_exact_mut(dim)) {
        codec.decode(c, r, v);
    }
    out
}

/// The pool that encodes writes: as many threads as the search pool, below its CPU priority
/// (`priority`, the first shard's: one pool per process), so that a writer encoding
/// without pause takes the cores searches leave idle rather than theirs. Only pure computation
/// runs on it: sled is never used from its threads (they live as long as the process, and
/// would keep sled's deferred frees, and its lock). `None` if it cannot be built (encoding
/// then shares the search pool).
fn encoding_pool(priority: Background) -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let built = background_pool("encode", priority);
        built.map_err(|e| tracing::warn!(error = %e, "no encoding pool: writes share the search pool")).ok()
    })
    .as_ref()
}

/// The CPU priority of background work (`ShardConfig::background`).
#[derive(Clone, Copy)]
pub(super) struct Background {
    pub nice: i32,
    pub idle: bool,
}

/// A pool of as many threads as the search pool, named `name-i`, each at `priority`.
pub(super) fn background_pool(
    name: &'static str,
    priority: Background,
) -> Result<rayon::ThreadPool, rayon::ThreadPoolBuildError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(rayon::current_num_threads())
        .thread_name(move |i| format!("{name}-{i}"))
        .start_handler(move |_| lower_priority(priority))
        .build()
}

/// Runs `work` on a thread of its own at `priority` and waits for it: for background work that
/// uses sled, which the pools' threads never do. Here, if no thread can be started.
pub(super) fn on_background_thread<T: Send>(priority: Background, work: impl FnOnce() -> T + Send) -> T {
    // Where the thread cannot start, the work is still in its slot.
    let slot = std::sync::Mutex::new(Some(work));
    let run = || slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take().map(|work| work());
    let done = std::thread::scope(|s| {
        let lowered = || {
            lower_priority(priority);
            run()
        };
        match std::thread::Builder::new().name("background".into()).spawn_scoped(s, lowered) {
            Ok(thread) => thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(e) => {
                tracing::warn!(error = %e, "no thread for background work: it runs at full priority");
                run()
            }
        }
    });
    done.expect("the work is taken from its slot once, by the thread or else here")
}

/// Lowers the calling thread's CPU priority to `priority.nice`, then (if `idle`) puts it under
/// SCHED_IDLE. On Linux both calls with who/pid 0 apply to the calling thread alone.
fn lower_priority(priority: Background) {
    let Background { nice, idle } = priority;
    // SAFETY: plain system calls on the calling thread, their results only logged.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), nice, "cannot lower a background thread's priority");
    }
    #[cfg(target_os = "linux")]
    if idle && unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &libc::sched_param { sched_priority: 0 }) } != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "SCHED_IDLE refused: background threads stay niced");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = idle;
}

/// `encoded` made from `source`: without originals if `source` was encoded without them (its
/// vectors were decoded, and decoded vectors are not the originals).
pub(super) fn without_made_up_originals(source: &Tokens, encoded: Tokens) -> Tokens {
    match (source, encoded) {
        (Tokens::Encoded { originals: None, .. }, Tokens::Encoded { codec, codes, residuals, .. }) => {
            Tokens::Encoded { codec, codes, residuals, originals: None }
        }
        (_, encoded) => encoded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nice_here() -> i32 {
        // SAFETY: plain system call; nice values 0 to 19 are never its error value, -1.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    #[test]
    fn background_work_runs_below_the_callers_priority_and_hands_back_its_result_or_panic() {
        let (here, priority) = (nice_here(), Background { nice: 7, idle: true });
        // SAFETY: plain system call on the calling thread.
        let (nice, policy) = on_background_thread(priority, || (nice_here(), unsafe { libc::sched_getscheduler(0) }));
        assert!(nice >= 7, "the work ran at nice {nice}");
        assert_eq!(policy, libc::SCHED_IDLE);
        assert_eq!(nice_here(), here, "the caller's priority is left as it was");
        let panicked = std::panic::catch_unwind(|| on_background_thread(priority, || panic!("in the background")));
        let message = panicked.expect_err("the panic reaches the caller");
        assert_eq!(message.downcast_ref::<&str>(), Some(&"in the background"));
    }
}
