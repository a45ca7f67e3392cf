//! Framework adapters over the [`Engine`](crate::engine::Engine): each reads its framework's
//! request, runs the engine before and after the handler, and lets handlers take a
//! [`Session`](crate::Session).

#[cfg(feature = "poem")]
pub(crate) mod poem;
#[cfg(feature = "tower")]
pub(crate) mod tower;
