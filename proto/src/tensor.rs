//! `Tensor` ↔ f32 matrices. Tensors are little-endian bytes with a shape and dtype (f32 or
//! f16); everything that arrives is checked before use, since a malformed tensor is bad input,
//! not a reason to panic.

use half::f16;

use crate::v1::{Dtype, Tensor};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TensorError {
    #[error("tensor: missing")]
    Missing,
    #[error("tensor: shape {0:?} is not [rows, dim]")]
    Shape(Vec<u32>),
    #[error("tensor: unknown dtype {0}")]
    Dtype(i32),
    #[error("tensor: {got} bytes of data for shape {shape:?} ({expected} expected)")]
    Length { shape: Vec<u32>, expected: usize, got: usize },
    #[error("tensor: a value is NaN or infinite")]
    NotFinite,
}

/// A row-major `[rows, dim]` f32 matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub dim: usize,
    pub values: Vec<f32>,
}

impl Matrix {
    /// The wire form, in f32 or (half the bytes) f16.
    pub fn to_tensor(&self, dtype: Dtype) -> Tensor {
        let data = match dtype {
            Dtype::F16 => self.values.iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect(),
            _ => self.values.iter().flat_map(|x| x.to_le_bytes()).collect(),
        };
        let dtype = if dtype == Dtype::F16 { Dtype::F16 } else { Dtype::F32 };
        Tensor { shape: vec![self.rows as u32, self.dim as u32], dtype: dtype as i32, data }
    }

    /// Reads a `[rows, dim]` tensor, checking shape, dtype, length and finiteness.
    pub fn from_tensor(tensor: Option<&Tensor>) -> Result<Matrix, TensorError> {
        let t = tensor.ok_or(TensorError::Missing)?;
        let &[rows, dim] = t.shape.as_slice() else { return Err(TensorError::Shape(t.shape.clone())) };
        let (rows, dim) = (rows as usize, dim as usize);
        let width = match Dtype::try_from(t.dtype) {
            Ok(Dtype::F32) => 4,
            Ok(Dtype::F16) => 2,
            _ => return Err(TensorError::Dtype(t.dtype)),
        };
        let expected = rows.checked_mul(dim).and_then(|n| n.checked_mul(width)).unwrap_or(usize::MAX);
        if t.data.len() != expected {
            return Err(TensorError::Length { shape: t.shape.clone(), expected, got: t.data.len() });
        }
        let values: Vec<f32> = if width == 4 {
            t.data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
        } else {
            t.data.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
        };
        if values.iter().any(|x| !x.is_finite()) {
            return Err(TensorError::NotFinite);
        }
        Ok(Matrix { rows, dim, values })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_malformed_tensors() {
        let m = Matrix { rows: 2, dim: 3, values: vec![0.5, -1.0, 2.0, 0.0, 1e-3, -7.25] };
        assert_eq!(Matrix::from_tensor(Some(&m.to_tensor(Dtype::F32))).unwrap(), m);
        let half = Matrix::from_tensor(Some(&m.to_tensor(Dtype::F16))).unwrap();
        assert!(half.values.iter().zip(&m.values).all(|(a, b)| (a - b).abs() <= 1e-3 * b.abs().max(1.0)));
        let good = m.to_tensor(Dtype::F32);
        let cases = [
            (Tensor { shape: vec![6], ..good.clone() }, TensorError::Shape(vec![6])),
            (Tensor { dtype: 9, ..good.clone() }, TensorError::Dtype(9)),
            (
                Tensor { data: good.data[..20].to_vec(), ..good.clone() },
                TensorError::Length { shape: vec![2, 3], expected: 24, got: 20 },
            ),
            (
                Tensor { shape: vec![u32::MAX, u32::MAX], ..good.clone() },
                TensorError::Length { shape: vec![u32::MAX, u32::MAX], expected: usize::MAX, got: 24 },
            ),
            (
                Tensor {
                    data: [f32::NAN.to_le_bytes(), [0; 4], [0; 4], [0; 4], [0; 4], [0; 4]].concat(),
                    ..good.clone()
                },
                TensorError::NotFinite,
            ),
        ];
        for (bad, want) in cases {
            assert_eq!(Matrix::from_tensor(Some(&bad)), Err(want));
        }
        assert_eq!(Matrix::from_tensor(None), Err(TensorError::Missing));
    }
}
