//! `coopmat`'s block: the group of its parameters that shapes a workgroup's work (its typed
//! parameters, [`CoopParams`](super::CoopParams), hold one), with the arithmetic on it that
//! the variant's module and the tests share.

/// The block: each workgroup computes `bm` x `bn` outputs as subgroups that each own a
/// `wm` x `wn` part of it (4 x 2 or 4 x 4 accumulator matrices), walking d_model `bk` at a
/// time through `stages` staging buffers (2: the next step loads while this one multiplies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CoopBlock {
    /// Token rows per workgroup.
    pub bm: u32,
    /// Output columns per workgroup.
    pub bn: u32,
    /// Token rows per subgroup (4 matrices).
    pub wm: u32,
    /// Output columns per subgroup (2 or 4 matrices).
    pub wn: u32,
    /// The step along d_model: 16, 32 or 64, a multiple of the tile.
    pub bk: u32,
    /// Staging buffers: 1 or 2.
    pub stages: u32,
}

impl CoopBlock {
    /// The block `coopmat(tile=T)` runs with unless told otherwise. 16x16 (NVIDIA, AMD): 8
    /// subgroups of 4 x 2 matrices, 128 x 128 outputs (CUTLASS's usual block), steps of 32,
    /// two stages. 8x8 (Apple, lavapipe): 8 subgroups of 4 x 4 matrices, 128 x 64 outputs,
    /// one stage, the fastest of the blocks timed on Mesa 26's lavapipe (BENCHMARKS.md).
    pub const fn default_for(tile: u32) -> Self {
        if tile == 8 {
            return Self {
                bm: 16 * tile,
                bn: 8 * tile,
                wm: 4 * tile,
                wn: 4 * tile,
                bk: 32,
                stages: 1,
            };
        }
        Self {
            bm: 8 * tile,
            bn: 8 * tile,
            wm: 4 * tile,
            wn: 2 * tile,
            bk: 32,
            stages: 2,
        }
    }

    /// Subgroups per workgroup: (bm / wm) x (bn / wn).
    pub const fn subgroups(&self) -> u32 {
        (self.bm / self.wm) * (self.bn / self.wn)
    }

    /// Bytes of workgroup memory on a device: the staged steps of X and W^T (f16 rows of
    /// `bk` padded by 8) and one accumulator matrix per subgroup for the epilogue.
    pub const fn workgroup_bytes(&self, tile: u32, f32_accumulator: bool) -> u32 {
        let acc = if f32_accumulator { 4 } else { 2 };
        self.stages * (self.bm + self.bn) * (self.bk + 8) * 2 + self.subgroups() * tile * tile * acc
    }

    /// 16-byte pieces of X and of W^T each invocation stages per step, with `invocations`
    /// per workgroup (the shader holds at most
    /// [`COOPMAT_MAX_PIECES`](super::COOPMAT_MAX_PIECES) of each).
    pub const fn pieces_per_invocation(&self, invocations: u32) -> (u32, u32) {
        let per_row = self.bk / 8;
        let inv = if invocations == 0 { 1 } else { invocations };
        (
            (self.bm * per_row).div_ceil(inv),
            (self.bn * per_row).div_ceil(inv),
        )
    }

    /// Whether the block is one the sources run with `tile` x `tile` matrices.
    pub fn check(&self, tile: u32) -> bool {
        let b = self;
        b.wm == 4 * tile
            && (b.wn == 2 * tile || b.wn == 4 * tile)
            && b.bm >= b.wm
            && b.bm.is_multiple_of(b.wm)
            && b.bn >= b.wn
            && b.bn.is_multiple_of(b.wn)
            && (1..=16).contains(&b.subgroups())
            && matches!(b.bk, 16 | 32 | 64)
            && b.bk.is_multiple_of(tile)
            && matches!(b.stages, 1 | 2)
    }
}
