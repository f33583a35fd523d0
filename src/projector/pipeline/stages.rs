//! The pipeline's stages, each on a buffer set: the producer fills X of a chunk into the
//! set's staging buffer mapped for writing; the GPU stage (on the calling thread) submits the
//! chunk and requests the maps the next stages need; the poller waits for each submission;
//! the consumer hands Q, K, V to the sink in place. Each tells the calling thread what it
//! did by an [`Event`]; what to do next is decided there (`super`: the books). Here too:
//! unmapping a set whatever its state, and readying every set for a run.

use crate::error::{Error, Result};
use crate::host::ElementsMut;
use crate::projector::buffers::Upload;
use crate::projector::engine::{chunk_label, ChunkOutput, Engine};
use crate::projector::operand::buffer_bytes;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// What the stages tell this thread.
pub(super) enum Event {
    /// The producer filled X of chunk `index` into set `set` (or failed to).
    Produced {
        set: usize,
        index: u32,
        busy: Duration,
        result: Result<()>,
    },
    /// Every buffer of set `set` was mapped after its submission (or one map failed).
    Mapped { set: usize, result: Result<()> },
    /// The consumer handed chunk `index` to the sink (or the sink failed).
    Consumed {
        set: usize,
        index: u32,
        busy: Duration,
        /// The kernel's pass and the epilogue's (GPU timestamps; zero without them).
        kernel: (Duration, Duration),
        result: Result<()>,
    },
    /// Waiting for a submission failed (a lost device, an error the GPU raised).
    PollFailed(Error),
}

/// The maps of one submitted set still to complete, and the first that failed.
pub(super) struct Maps {
    left: AtomicUsize,
    failed: Mutex<Option<String>>,
}

/// Starts a thread of the pipeline, named "qkv NAME".
pub(super) fn spawn<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    name: &str,
    body: impl FnOnce() + Send + 'scope,
) -> Result<std::thread::ScopedJoinHandle<'scope, ()>> {
    std::thread::Builder::new()
        .name(format!("qkv {name}"))
        .spawn_scoped(scope, body)
        .map_err(|e| Error::Input(format!("starting the {name} thread: {e}")))
}

/// A panic in a user's closure, as an error naming where it happened.
pub(super) fn panicked(what: &str, payload: Box<dyn std::any::Any + Send>) -> Error {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    Error::Input(format!("{what} panicked: {message}"))
}

/// The poller: waits for each submission until it is done. (Not in short waits: a wait that
/// times out while another thread submits can trip a consistency assertion in wgpu-core 30's
/// `maintain`, seen as a panic on lavapipe. Where wgpu has no timeline semaphores, as on
/// lavapipe, the wait holds the fence lock that `Queue::submit` needs; that submit then
/// waits, and its time is counted as the GPU stage's, not as upload.)
pub(super) fn poll(
    ctx: &crate::context::GpuContext,
    submissions: mpsc::Receiver<(wgpu::SubmissionIndex, String)>,
    events: mpsc::Sender<Event>,
) {
    for (submission, label) in submissions {
        let waited = catch_unwind(AssertUnwindSafe(|| ctx.wait(submission, &label)))
            .unwrap_or_else(|p| Err(panicked("waiting for the GPU", p)));
        if let Err(e) = waited {
            events.send(Event::PollFailed(e)).ok();
        }
    }
}

impl Engine<'_> {
    /// The producer: fills X of each chunk it is given into its set's staging buffer.
    pub(super) fn produce<S>(
        &self,
        jobs: mpsc::Receiver<(usize, u32)>,
        mut source: S,
        events: mpsc::Sender<Event>,
    ) where
        S: FnMut(Range<u32>, ElementsMut<'_>) -> Result<()>,
    {
        for (set, index) in jobs {
            let start = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(|| {
                self.produce_one(set, index, &mut source)
            }))
            .unwrap_or_else(|p| Err(panicked("the source of X", p)));
            let busy = start.elapsed();
            let event = Event::Produced {
                set,
                index,
                busy,
                result,
            };
            if events.send(event).is_err() {
                return;
            }
        }
    }

    fn produce_one(
        &self,
        set: usize,
        index: u32,
        source: &mut impl FnMut(Range<u32>, ElementsMut<'_>) -> Result<()>,
    ) -> Result<()> {
        let rows = self.plan.chunk(index);
        let d = self.plan.shape.d_model as usize;
        let len = rows.len() * d;
        let s = &self.slots[set];
        let label = chunk_label(index, self.plan.chunks(), &rows);
        let map_error = |e: wgpu::MapRangeError| Error::Gpu {
            during: format!("{label}: mapping X's staging buffer"),
            message: e.to_string(),
        };
        // Mapped X is the source's own, in the run's type (which is X's on the GPU).
        let element = self.spec.dtype();
        match (self.upload, &s.x_up) {
            (Upload::Mapped, Some(up)) => {
                let bytes = element.buffer_bytes(len as u64).next_multiple_of(4);
                let mut view = up
                    .slice(..bytes)
                    .get_mapped_range_mut()
                    .map_err(map_error)?;
                source(rows, ElementsMut::from_bytes(element, view.slice(..), len))
            }
            (Upload::MappedConverted, Some(up)) => {
                let mut host = s.x_host.lock().expect("no panic holds it");
                source(rows.clone(), host.as_mut().slice_mut(0..len))?;
                let x = host.as_ref().slice(0..len);
                self.check_input_range(x, &rows)?;
                let input = self.spec.types.x;
                let stride = self.spec.x_stride(d as u32) as usize;
                let mut scratch = s.x_bytes.lock().expect("no panic holds it");
                let bytes = buffer_bytes((x, input), (d, stride), &mut scratch);
                let mapped = (bytes.len() as u64).next_multiple_of(4);
                let mut view = up
                    .slice(..mapped)
                    .get_mapped_range_mut()
                    .map_err(map_error)?;
                view.slice(..bytes.len()).copy_from_slice(bytes);
                Ok(())
            }
            // Textures: the host copy, which this thread uploads through the queue.
            _ => {
                let mut host = s.x_host.lock().expect("no panic holds it");
                source(rows, host.as_mut().slice_mut(0..len))
            }
        }
    }

    /// Submits chunk `index`, produced into set `set`: X's staging buffer unmapped and copied
    /// to X (or X written by the queue), the chunk's work, then every map the next stages
    /// need (Q, K, V and the timestamps for reading, X's staging buffer for writing again),
    /// which report to `events` when all are done; the submission goes to the poller.
    pub(super) fn submit_set(
        &self,
        set: usize,
        index: u32,
        events: &mpsc::Sender<Event>,
        poll: &mpsc::Sender<(wgpu::SubmissionIndex, String)>,
    ) -> Result<(Arc<Maps>, Duration)> {
        let ctx = self.ctx;
        let rows = self.plan.chunk(index);
        let count = rows.len() as u32;
        let label = chunk_label(index, self.plan.chunks(), &rows);
        let s = &self.slots[set];
        let x_bytes = match &s.x_up {
            Some(up) => {
                up.unmap();
                s.x_up_mapped.store(false, Ordering::Release);
                let stride = self.spec.x_stride(self.plan.shape.d_model) as u64;
                let input = self.spec.types.x;
                Some((
                    up,
                    input
                        .buffer_bytes(count as u64 * stride)
                        .next_multiple_of(4),
                ))
            }
            None => {
                self.upload_queued(set, &rows, &label)?;
                None
            }
        };
        self.write_params(&s.params, count)?;
        self.write_epilogue(set, rows.start);
        let kernel_label = format!("{label}: dispatch of kernel {}", self.spec);
        let encoder = self.encode_chunk(set, count, &kernel_label, |encoder| {
            if let (Some((up, bytes)), Some(x)) = (x_bytes, s.x.buffer()) {
                encoder.copy_buffer_to_buffer(up, 0, x, 0, bytes);
            }
        })?;
        let start = Instant::now();
        let submission = ctx.checked(&kernel_label, || ctx.queue.submit([encoder.finish()]))?;
        let submit = start.elapsed();

        let readbacks = self.readback_buffers(set, count as usize);
        let total = readbacks.len() + usize::from(s.x_up.is_some());
        let maps = Arc::new(Maps {
            left: AtomicUsize::new(total),
            failed: Mutex::new(None),
        });
        let request = |buffer: &wgpu::Buffer,
                       bytes: Option<u64>,
                       mode: wgpu::MapMode,
                       mapped: Option<Arc<AtomicBool>>| {
            let (maps, events) = (maps.clone(), events.clone());
            let label = format!("{label}: mapping its buffers");
            let callback = move |r: std::result::Result<(), wgpu::BufferAsyncError>| {
                if let (Ok(()), Some(flag)) = (&r, &mapped) {
                    flag.store(true, Ordering::Release);
                }
                if let Err(e) = r {
                    maps.failed
                        .lock()
                        .expect("no panic holds it")
                        .get_or_insert(e.to_string());
                }
                if maps.left.fetch_sub(1, Ordering::AcqRel) == 1 {
                    let failed = maps.failed.lock().expect("no panic holds it").take();
                    let result = match failed {
                        None => Ok(()),
                        Some(e) => Err(Error::Readback(format!("{label}: {e}"))),
                    };
                    events.send(Event::Mapped { set, result }).ok();
                }
            };
            match bytes {
                Some(bytes) => buffer.slice(..bytes).map_async(mode, callback),
                None => buffer.slice(..).map_async(mode, callback),
            }
        };
        for (buffer, bytes) in readbacks {
            request(buffer, Some(bytes), wgpu::MapMode::Read, None);
        }
        if let Some(up) = &s.x_up {
            // Whole, ready for any chunk the set gets next.
            request(up, None, wgpu::MapMode::Write, Some(s.x_up_mapped.clone()));
        }
        // Only now to the poller: its wait resolves the maps requested before it (a map
        // requested after the last poll would wait for a poll that never comes).
        poll.send((submission, format!("{label}: waiting for the GPU")))
            .ok();
        Ok((maps, submit))
    }

    /// The consumer: hands each chunk it is given to the sink, in place.
    pub(super) fn consume<K>(
        &self,
        jobs: mpsc::Receiver<(usize, u32)>,
        mut sink: K,
        events: mpsc::Sender<Event>,
    ) where
        K: FnMut(ChunkOutput<'_>) -> Result<()>,
    {
        // After the sink fails, the chunks already on their way are not handed to it.
        let mut sink_failed = false;
        for (set, index) in jobs {
            if sink_failed {
                self.unmap_readbacks(set);
                let event = Event::Consumed {
                    set,
                    index,
                    busy: Duration::ZERO,
                    kernel: Default::default(),
                    result: Ok(()),
                };
                if events.send(event).is_err() {
                    return;
                }
                continue;
            }
            let start = Instant::now();
            let rows = self.plan.chunk(index);
            let label = format!(
                "{}: reading Q, K, V back",
                chunk_label(index, self.plan.chunks(), &rows)
            );
            let result = catch_unwind(AssertUnwindSafe(|| {
                self.hand_over(set, (index, rows), &mut sink, &label)
            }))
            .unwrap_or_else(|p| {
                self.unmap_readbacks(set);
                Err(panicked("the sink of Q, K, V", p))
            });
            let (kernel, result) = match result {
                Ok(kernel) => (kernel, Ok(())),
                Err(e) => {
                    sink_failed = true;
                    (Default::default(), Err(e))
                }
            };
            let event = Event::Consumed {
                set,
                index,
                busy: start.elapsed(),
                kernel,
                result,
            };
            if events.send(event).is_err() {
                return;
            }
        }
    }

    /// Unmaps `buffer` whatever its state: a map still pending is aborted (its callback
    /// reports it), and one never made is no error (wgpu would report it as one).
    fn unmap_any(&self, buffer: &wgpu::Buffer) {
        let scope = self
            .ctx
            .device
            .push_error_scope(wgpu::ErrorFilter::Validation);
        buffer.unmap();
        // The scope holds "not mapped", which is what is expected here, or nothing.
        drop(scope.pop());
    }

    /// Unmaps set `set`'s readback buffers (a map still pending is aborted).
    pub(super) fn unmap_readbacks(&self, set: usize) {
        for (b, _) in self.readback_buffers(set, 0) {
            self.unmap_any(b);
        }
    }

    /// Aborts set `set`'s maps still pending (their callbacks report the abort), and
    /// unmaps what is mapped.
    pub(super) fn abort_maps(&self, set: usize) {
        self.unmap_readbacks(set);
        if let Some(up) = &self.slots[set].x_up {
            self.unmap_any(up);
            self.slots[set].x_up_mapped.store(false, Ordering::Release);
        }
    }

    /// Readies every set for a run: readback buffers unmapped, X's staging buffers mapped
    /// for writing (as they are after a run that ended well).
    pub(super) fn ready_sets(&self) -> Result<()> {
        let mut pending = Vec::new();
        for (set, s) in self.slots.iter().enumerate() {
            self.unmap_readbacks(set);
            if let Some(up) = &s.x_up {
                if !s.x_up_mapped.load(Ordering::Acquire) {
                    self.unmap_any(up);
                    let (sender, receiver) = mpsc::channel();
                    up.slice(..).map_async(wgpu::MapMode::Write, move |r| {
                        sender.send(r).ok();
                    });
                    pending.push((set, receiver));
                }
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Poll {
                during: "mapping X's staging buffers".into(),
                message: e.to_string(),
            })?;
        for (set, r) in pending {
            match r.recv() {
                Ok(Ok(())) => self.slots[set].x_up_mapped.store(true, Ordering::Release),
                Ok(Err(e)) => {
                    return Err(Error::Readback(format!("mapping X's staging buffers: {e}")))
                }
                Err(_) => {
                    return Err(Error::Readback(
                        "mapping X's staging buffers: never completed".into(),
                    ))
                }
            }
        }
        Ok(())
    }
}
