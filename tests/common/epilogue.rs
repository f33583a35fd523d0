//! What the epilogue tests share (tests/epilogue.rs, tests/epilogue_fused.rs): a run of a
//! kernel with QK-norm and RoPE and its check against the f64 reference, and the settings
//! and shapes they run.

use super::ctx;
use qkv_wgpu::epilogue::{
    Epilogue, Heads, NormScope, Positions, QkNorm, Rope, RopePairs, RopeScaling,
};
use qkv_wgpu::plan::ChunkOptions;
use qkv_wgpu::quant::WeightType;
use qkv_wgpu::{
    random_inputs, reference, ElementType, Error, FusedWeights, GpuContext, Kernel, KernelConfig,
    KernelSpec, OutputLayout, Projector, QkvReport, QkvShape, Reference, Tolerance,
};

/// Seeded weights in [-1, 1) for a norm of `n` elements (never zero, never all alike).
pub fn weights(n: u32, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 37 + seed * 11) % 23) as f32 / 11.5 - 0.95)
        .collect()
}

pub fn heads_of(heads: u32, kv_heads: u32, head_dim: u32, seq: u32) -> Heads {
    Heads {
        heads,
        kv_heads,
        head_dim,
        seq,
    }
}

pub fn rope(rotary_dim: u32, pairs: RopePairs) -> Rope {
    Rope {
        theta: 10_000.0,
        rotary_dim,
        pairs,
        scaling: RopeScaling::None,
        freq_factors: None,
    }
}

pub fn per_head_norm(head_dim: u32) -> QkNorm {
    QkNorm {
        scope: NormScope::PerHead,
        eps: 1e-6,
        q_weight: weights(head_dim, 1),
        k_weight: weights(head_dim, 2),
        plus_one: false,
    }
}

/// Qwen3's epilogue: RMSNorm per head, then rotate-half over `rotary_dim`.
pub fn qwen3(head_dim: u32, rotary_dim: u32, positions: Positions) -> Epilogue {
    Epilogue {
        qk_norm: Some(per_head_norm(head_dim)),
        rope: Some(rope(rotary_dim, RopePairs::Half)),
        positions,
    }
}

/// A run of `config` in `element` with `ep` over `heads`, and its check: Q and K with the
/// epilogue's tolerance, V with the kernel's.
pub struct Run<'a> {
    pub ctx: &'a GpuContext,
    pub shape: QkvShape,
    pub config: KernelConfig,
    pub element: ElementType,
    pub layout: OutputLayout,
    pub opts: ChunkOptions,
    pub seed: u64,
    /// W kept in these formats, dequantized by the kernel (else fused in `element`).
    pub w_formats: Option<[WeightType; 3]>,
    /// Whether the projector must apply the epilogue in the kernel's store (checked where
    /// given).
    pub fused: Option<bool>,
}

impl<'a> Run<'a> {
    pub fn new(shape: QkvShape, config: impl Into<KernelConfig>) -> Self {
        Self {
            ctx: ctx(),
            shape,
            config: config.into(),
            element: ElementType::F32,
            layout: OutputLayout::Tokens,
            opts: ChunkOptions::default(),
            seed: 7,
            w_formats: None,
            fused: None,
        }
    }

    /// The run's kernel, reading W in `w_formats` where given.
    pub fn spec(&self) -> qkv_wgpu::Result<KernelSpec> {
        let spec = KernelSpec::resolve(self.config, self.element, &self.ctx.summary);
        match self.w_formats {
            Some(f) => spec.and_then(|s| s.with_w_formats(f)),
            None => spec,
        }
        .map_err(Error::Input)
    }

    pub fn projector(&self, ep: &Epilogue, heads: Heads) -> qkv_wgpu::Result<Projector<'a>> {
        let spec = self.spec()?;
        Projector::with_epilogue(
            self.ctx,
            self.shape,
            spec,
            (self.layout, &self.opts),
            (ep, heads),
        )
    }

    /// The outputs of the run, and the reference of its rounded inputs (token-major).
    pub fn outputs(&self, ep: &Epilogue, heads: Heads) -> (qkv_wgpu::QkvOutput, Reference) {
        let (mut x, w) = random_inputs(&self.shape, self.seed);
        let w = match self.w_formats {
            Some(f) => w.quantized(f).expect("quantize"),
            None => w,
        };
        let mut p = self
            .projector(ep, heads)
            .unwrap_or_else(|e| panic!("{} on {}: {e}", self.config, self.shape));
        if let Some(fused) = self.fused {
            assert_eq!(
                p.epilogue_fused(),
                fused,
                "{} on {}",
                self.config,
                self.shape
            );
        }
        p.set_weights(&w).unwrap();
        let out = p.run(&x).unwrap();
        self.element.round_slice(&mut x);
        let w: FusedWeights = w.rounded(self.element);
        (out, reference(&self.shape, &x, &w))
    }

    /// The check of the run against `checked_as` (the epilogue it ran, or another).
    pub fn check_as(&self, ep: &Epilogue, checked_as: &Epilogue, heads: Heads) -> QkvReport {
        let (out, r) = self.outputs(ep, heads);
        let v = Tolerance::for_kernel(self.shape.d_model, &self.spec().unwrap());
        let qk = v.with_epilogue(checked_as, &heads, self.element);
        let r = r.with_epilogue(checked_as, &heads, None);
        let r = match self.layout {
            OutputLayout::Tokens => r,
            OutputLayout::Heads(h) => r.map(
                |m| {
                    self.layout
                        .arrange(m, self.shape.tokens, self.shape.q_width, h.heads)
                },
                |m| {
                    self.layout
                        .arrange(m, self.shape.tokens, self.shape.kv_width, h.kv_heads)
                },
            ),
        };
        QkvReport::split(
            (&out.q, &out.k, &out.v),
            &r,
            (self.shape.q_width, self.shape.kv_width),
            (qk, v),
        )
    }

    pub fn check(&self, ep: &Epilogue, heads: Heads) -> QkvReport {
        self.check_as(ep, ep, heads)
    }
}

/// 3 query heads and 1 KV head of 10 (Q 30 wide, K and V 10), over d_model 45, `tokens`
/// tokens of one sequence: sizes no tile divides.
pub fn ragged(tokens: u32) -> (QkvShape, Heads) {
    let shape = QkvShape::new(tokens, 45, 30, 10, true).unwrap();
    let heads = heads_of(3, 1, 10, tokens);
    (shape, heads)
}

pub fn supported(k: Kernel) -> bool {
    KernelConfig::from(k)
        .unsupported_on(&ctx().summary)
        .is_none()
}

/// A context on the same adapter with storage bindings of 4 KiB: W in column blocks, X and
/// the outputs in chunks, the f32 scratch bounding the chunk in a half type.
pub fn small() -> &'static GpuContext {
    static SMALL: std::sync::OnceLock<GpuContext> = std::sync::OnceLock::new();
    SMALL.get_or_init(|| {
        let filter = qkv_wgpu::AdapterFilter {
            name: Some(ctx().summary.name.clone()),
            ..qkv_wgpu::AdapterFilter::from_env().unwrap()
        };
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: 4 * 1024,
            ..wgpu::Limits::default()
        };
        let opts = qkv_wgpu::ContextOptions {
            limits: Some(limits),
            ..Default::default()
        };
        GpuContext::with_options(&filter, &opts).expect("a context with lowered limits")
    })
}

/// `ep` with RoPE alone, and with the norm alone (at position 0: nothing rotates).
pub fn each_step_alone(ep: &Epilogue) -> [Epilogue; 2] {
    let rope_only = Epilogue {
        qk_norm: None,
        ..ep.clone()
    };
    let norm_only = Epilogue {
        rope: None,
        positions: Positions::Offset(0),
        ..ep.clone()
    };
    [rope_only, norm_only]
}
