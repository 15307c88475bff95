//! petseg-ops3d (work in progress).
