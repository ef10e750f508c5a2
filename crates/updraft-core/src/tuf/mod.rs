//! The TUF metadata model (spec 1.0.x): being written.
