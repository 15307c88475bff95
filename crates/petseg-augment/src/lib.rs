//! petseg-augment (work in progress).
