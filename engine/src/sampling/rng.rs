//! The sampler's random numbers: xoshiro256** (Blackman and Vigna, public domain), its four words of state
//! seeded from one u64 through SplitMix64 as its authors recommend. Written out (30 lines) rather than taken
//! from a crate: the engine builds for wasm32 with no OS entropy, the state must serialize into a chat snapshot
//! as plain numbers, and the sequence must never change under us with a dependency's release.

/// SplitMix64 (Steele, Lea and Flood; public domain): seeds xoshiro here, and is the one generator the harness
/// and the tests draw reproducible inputs from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// Seeded with the FNV-1a hash of `name`, so inputs named after a case reproduce exactly.
    pub fn from_name(name: &str) -> SplitMix64 {
        SplitMix64(name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Four words of xoshiro256** state; never all zero (SplitMix64 cannot produce four zeros in a row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Xoshiro256 {
    pub(crate) words: [u64; 4],
}

impl Xoshiro256 {
    pub fn seed_from_u64(seed: u64) -> Xoshiro256 {
        let mut splitmix = SplitMix64(seed);
        Xoshiro256 { words: [splitmix.next_u64(), splitmix.next_u64(), splitmix.next_u64(), splitmix.next_u64()] }
    }

    /// State restored from a snapshot; an all-zero state (which would only ever yield zeros) is reseeded.
    pub fn from_words(words: [u64; 4]) -> Xoshiro256 {
        if words == [0; 4] { Xoshiro256::seed_from_u64(0) } else { Xoshiro256 { words } }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.words;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1): the top 53 bits as the mantissa of an f64.
    pub fn next_unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference implementation's output for the state {1, 2, 3, 4} (the test vector the `rand_xoshiro`
    /// crate also checks against).
    #[test]
    fn xoshiro256starstar_reference_vector() {
        let mut rng = Xoshiro256 { words: [1, 2, 3, 4] };
        let first: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
        assert_eq!(first, [11520, 0, 1509978240, 1215971899390074240]);
    }

    #[test]
    fn unit_floats_stay_in_range() {
        let mut rng = Xoshiro256::seed_from_u64(7);
        assert!((0..10_000).map(|_| rng.next_unit_f64()).all(|u| (0.0..1.0).contains(&u)));
    }
}
