//! Reorientation to RAS+ by axis permutation and flips (no interpolation).

use nalgebra::Matrix4;
use ndarray::{Array3, Axis, ShapeBuilder};

use crate::affine::Affine;
use crate::volume::Volume;

/// The permutation and flips that bring a grid closest to RAS+: voxel axis
/// `a` of the result is voxel axis `source_axis[a]` of the input, reversed
/// when `flip[a]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RasTransform {
    /// Input voxel axis feeding each output axis.
    pub source_axis: [usize; 3],
    /// Whether each output axis runs against its input axis.
    pub flip: [bool; 3],
}

impl RasTransform {
    /// The transform for `affine`: each voxel axis goes to the world axis it
    /// is most aligned with ([`Affine::dominant_axes`], as nibabel's
    /// `io_orientation`), and is flipped if it points to L, P or I.
    pub fn for_affine(affine: &Affine) -> Self {
        let world_of = affine.dominant_axes();
        let d = affine.direction();
        let mut source_axis = [0usize; 3];
        let mut flip = [false; 3];
        for (vox, &w) in world_of.iter().enumerate() {
            source_axis[w] = vox;
            flip[w] = d[(w, vox)] < 0.0;
        }
        RasTransform { source_axis, flip }
    }

    /// Whether the transform changes nothing.
    pub fn is_identity(&self) -> bool {
        self.source_axis == [0, 1, 2] && self.flip == [false; 3]
    }
}

/// Reorients `vol` so that its voxel axes point (as closely as the grid
/// allows) to R, A and S. Only permutes and flips axes: voxel values are
/// copied, never interpolated, and the affine is updated so that every voxel
/// keeps its world coordinate. An oblique grid stays oblique (its code
/// becomes `RAS`, its direction cosines keep their tilt).
pub fn reorient_to_ras<T: Clone>(vol: &Volume<T>) -> Volume<T> {
    let t = RasTransform::for_affine(vol.affine());
    if t.is_identity() {
        return vol.clone();
    }
    let shape = vol.shape();
    let new_shape = [
        shape[t.source_axis[0]],
        shape[t.source_axis[1]],
        shape[t.source_axis[2]],
    ];
    // old index o[src[a]] = flip[a] ? n[src[a]] - 1 - new[a] : new[a].
    let mut p = Matrix4::<f64>::zeros();
    p[(3, 3)] = 1.0;
    for a in 0..3 {
        let s = t.source_axis[a];
        if t.flip[a] {
            p[(s, a)] = -1.0;
            p[(s, 3)] = (shape[s] - 1) as f64;
        } else {
            p[(s, a)] = 1.0;
        }
    }
    let affine = vol
        .affine()
        .compose(&p)
        .expect("a permutation with flips keeps the affine finite and invertible");

    let mut view =
        vol.data()
            .view()
            .permuted_axes([t.source_axis[0], t.source_axis[1], t.source_axis[2]]);
    for a in 0..3 {
        if t.flip[a] {
            view.invert_axis(Axis(a));
        }
    }
    let Some(first) = vol.data().iter().next() else {
        return Volume::new(view.to_owned(), affine);
    };
    let mut out = Array3::from_elem(new_shape.f(), first.clone());
    out.assign(&view);
    Volume::new(out, affine)
}
