//! Integration tests of the QRIS codec: the vectors of `shared/domain/qris.md`, rejected
//! inputs, static → dynamic conversion and property tests.

mod decode;
mod dynamic;
mod errors;
mod props;
mod vectors;
