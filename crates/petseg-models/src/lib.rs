//! petseg-models (work in progress).
