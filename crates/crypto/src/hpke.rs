//! hpke
