//! MeCab's connection-cost matrix (`matrix.bin`, `Connector`): `u16 lsize, u16 rsize`, then
//! `lsize * rsize` i16 costs. The cost of putting node `r` after node `l` is
//! `matrix[l.rc_attr + lsize * r.lc_attr] + r.word_cost`.

use std::path::Path;

use memmap2::Mmap;

use super::dictionary::map_file;
use crate::error::{Error, Result};

pub struct Connector {
    map: Mmap,
    lsize: usize,
    rsize: usize,
}

impl Connector {
    pub fn open(path: &Path) -> Result<Connector> {
        let map = map_file(path)?;
        if map.len() < 4 {
            return Err(Error::dictionary(path, "shorter than its 4-byte header"));
        }
        let lsize = u16::from_le_bytes([map[0], map[1]]) as usize;
        let rsize = u16::from_le_bytes([map[2], map[3]]) as usize;
        let expected = 2 * (lsize * rsize + 2);
        if map.len() != expected {
            return Err(Error::dictionary(
                path,
                format!("{} bytes where a {lsize}×{rsize} matrix takes {expected} (truncated or corrupt)", map.len()),
            ));
        }
        Ok(Connector { map, lsize, rsize })
    }

    pub fn lsize(&self) -> usize {
        self.lsize
    }

    pub fn rsize(&self) -> usize {
        self.rsize
    }

    /// The cost table as i16 values (the mapping is page-aligned and the header is 4 bytes, so
    /// the cast cannot fail; it is checked anyway).
    pub fn costs(&self) -> &[i16] {
        bytemuck::try_cast_slice(&self.map[4..]).unwrap_or(&[])
    }

    /// Connection cost between a left node's right context and a right node's left context.
    /// Out-of-range ids (impossible once the dictionaries are checked) cost 0.
    pub fn cost(&self, left_rc: u16, right_lc: u16) -> i16 {
        self.costs().get(left_rc as usize + self.lsize * right_lc as usize).copied().unwrap_or(0)
    }
}
