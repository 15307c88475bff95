//! C3's SUVmax voxel on ties: the study's reference takes NumPy's `argmax`
//! of `gt · pet` on the `[i, j, k]` array, i.e. the first maximum in C order
//! (k fastest), not in NIfTI raster order (i fastest). The two orders pick
//! different voxels here, so only the reference's order gives this result.

use petseg_eval::{evaluate_case, Connectivity};
use petseg_io::{Affine, Volume};

#[test]
fn suvmax_ties_follow_numpy_argmax_order() {
    let aff = Affine::from_spacing_origin([1.0; 3], [0.0; 3]).unwrap();
    let mut gt = Volume::filled([4, 4, 4], 0u8, aff).unwrap();
    let mut pet = Volume::filled([4, 4, 4], 1.0f32, aff).unwrap();
    // One 18-connected GT lesion: (1,1,1), (1,1,2) and (2,1,1).
    for ijk in [[1, 1, 1], [1, 1, 2], [2, 1, 1]] {
        gt.data_mut()[ijk] = 1;
    }
    // Tied SUVmax at (1,1,2) and (2,1,1). C order (NumPy) picks (1,1,2);
    // i-fastest raster order would pick (2,1,1).
    pet.data_mut()[[1, 1, 2]] = 9.0;
    pet.data_mut()[[2, 1, 1]] = 9.0;
    // The prediction covers (1,1,1) and (1,1,2), not (2,1,1).
    let mut pred = Volume::filled([4, 4, 4], 0u8, aff).unwrap();
    pred.data_mut()[[1, 1, 1]] = 1;
    pred.data_mut()[[1, 1, 2]] = 1;
    let m = evaluate_case("tie", &pred, &gt, Some(&pet), Connectivity::Eighteen)
        .unwrap()
        .patient;
    assert_eq!((m.tp_c3, m.fp_c3, m.fn_c3), (Some(1), Some(0), Some(0)));
}
