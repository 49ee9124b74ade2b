//! Shipped graphs (being written).
