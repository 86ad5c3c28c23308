//! The workgroup tiles of the tiled input gradient (`mul_mat_grad_q_tiled.wgsl`), laid out as the tiled forward's
//! (`mul_mat.wgsl`, 64 × 64 only): 256 invocations each own 4 × 4 outputs, and each step of the inner sum decodes
//! one group of 8 weights per invocation. A tile spans `width` of W's columns × `tokens` tokens. The forward keeps
//! its square tile: a `mul_mat.wgsl` with both tiles ran 8–9× slower on the H100 in both, for a reason not found
//! (perf/LOG.md, stop 30).

/// Invocations of a tiled workgroup.
pub const TILE_INVOCATIONS: u32 = 256;

/// 64 × 64 for a sequence; 256 × 16 for up to 16 tokens (the LM head's rows at a time), where a square tile would be
/// at least three quarters padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tile {
    Square,
    Wide,
}

impl Tile {
    pub const ALL: [Tile; 2] = [Tile::Square, Tile::Wide];

    pub fn for_tokens(n_tokens: u32) -> Self {
        if n_tokens <= Tile::Wide.tokens() { Tile::Wide } else { Tile::Square }
    }

    /// Columns of W per tile.
    pub fn width(self) -> u32 {
        match self {
            Tile::Square => 64,
            Tile::Wide => 256,
        }
    }

    /// Tokens per tile: 4 per invocation across the rest of the workgroup.
    pub fn tokens(self) -> u32 {
        TILE_INVOCATIONS * 16 / self.width()
    }

    /// Elements of the inner sum per step: one group of 8 per invocation over the tile's width.
    pub fn step(self) -> u32 {
        TILE_INVOCATIONS * 8 / self.width()
    }

    /// `{width}x{tokens}x{step}`, for kernel names.
    pub fn label(self) -> String {
        format!("{}x{}x{}", self.width(), self.tokens(), self.step())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_fit_the_webgpu_workgroup_memory_default() {
        for tile in Tile::ALL {
            // W's step and the tokens' step, f32 each.
            let bytes = (tile.width() + tile.tokens()) * tile.step() * 4;
            assert!(bytes <= 16384, "{tile:?}: {bytes} bytes");
            assert_eq!(tile.width() * tile.step() / 8, TILE_INVOCATIONS, "{tile:?}: one group per invocation");
        }
        assert_eq!(Tile::for_tokens(16), Tile::Wide);
        assert_eq!(Tile::for_tokens(17), Tile::Square);
    }
}
