//! Element-wise ops.

use crate::{check_len, Result};

/// BERT's exact GELU, `x · ½ · (1 + erf(x / √2))` (not the tanh approximation).
pub fn gelu_erf(x: &mut [f32]) {
    for v in x {
        *v = *v * 0.5 * (1.0 + libm::erff(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// `x += y` (residual connections).
pub fn add_in_place(x: &mut [f32], y: &[f32]) -> Result<()> {
    check_len("add_in_place", "y", y.len(), x.len())?;
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::testing::{max_rel_err, Rng};

    /// Against libm's f64 `erf` (a separate implementation from the f32 `erff` under test).
    #[test]
    fn gelu_matches_f64_erf() {
        let mut rng = Rng::new(3);
        let input = rng.vec(4096, 8.0);
        let mut out = input.clone();
        gelu_erf(&mut out);
        let want: Vec<f64> = input.iter().map(|&x| x as f64 * 0.5 * (1.0 + libm::erf(x as f64 / 2f64.sqrt()))).collect();
        assert!(max_rel_err(&out, &want) < 1e-6);
        let mut edge = [0.0, -10.0, 10.0];
        gelu_erf(&mut edge);
        assert_eq!(edge, [0.0, -0.0, 10.0]);
    }

    #[test]
    fn residual_add() {
        let mut x = vec![1.0, 2.0];
        add_in_place(&mut x, &[0.5, -2.0]).unwrap();
        assert_eq!(x, [1.5, 0.0]);
        assert!(add_in_place(&mut x, &[1.0]).is_err());
    }
}
