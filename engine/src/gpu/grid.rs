//! Dispatch sizes. Workgroup counts are spread over x and y under `max_compute_workgroups_per_dimension`; kernels
//! compute a linear workgroup id (`wid.x + wid.y * nwg.x`) and bounds-check it.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub x: u32,
    pub y: u32,
    /// Workgroups that are needed; `x * y` may exceed it, and the extra ones exit at their bounds check.
    pub workgroups: u32,
}

impl Grid {
    /// One workgroup per `per_workgroup` items (elements, rows, …).
    pub fn for_items(n_items: u64, per_workgroup: u32, max_per_dim: u32) -> Grid {
        let workgroups = n_items.div_ceil(per_workgroup.max(1) as u64);
        Self::spread(workgroups, max_per_dim)
    }

    fn spread(workgroups: u64, max_per_dim: u32) -> Grid {
        let max = max_per_dim.max(1) as u64;
        let y = workgroups.div_ceil(max).max(1);
        let x = workgroups.div_ceil(y);
        Grid { x: x as u32, y: y as u32, workgroups: workgroups as u32 }
    }

    pub fn is_empty(&self) -> bool {
        self.workgroups == 0
    }

    pub fn idle_workgroups(&self) -> u32 {
        self.x * self.y - self.workgroups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_under_the_limit() {
        assert_eq!(Grid::for_items(1000, 64, 65535), Grid { x: 16, y: 1, workgroups: 16 });
        let g = Grid::for_items(200_000, 1, 65535);
        assert!(g.x <= 65535 && g.x as u64 * g.y as u64 >= 200_000);
        assert_eq!(g.idle_workgroups(), g.x * g.y - 200_000);
        assert!(Grid::for_items(0, 64, 65535).is_empty());
    }
}
