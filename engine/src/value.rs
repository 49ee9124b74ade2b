//! Values that travel on graph edges, and their port types.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::mask::Mask;
use crate::table::Table;
use crate::volume::{Geometry, Image, Labels};

/// The type of a port; an edge is valid only between ports of the same type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum PortType {
    /// Numeric voxels with geometry (HU for CT).
    Image,
    /// Binary voxels with geometry.
    Mask,
    /// Small-integer voxels with geometry (0 = background).
    Labels,
    /// Rows of named values.
    Table,
    /// A trained model.
    Model,
    /// A configuration document (e.g. training hyperparameters).
    Config,
    /// A running service (e.g. a patch server) that lives while a reader holds it.
    Service,
}

impl PortType {
    /// Every port type, for documentation and checks.
    pub const ALL: [PortType; 7] = [
        PortType::Image,
        PortType::Mask,
        PortType::Labels,
        PortType::Table,
        PortType::Model,
        PortType::Config,
        PortType::Service,
    ];
}

impl fmt::Display for PortType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A value on an edge. Cloning shares the data (`Arc`); nothing is deep-copied.
#[derive(Clone)]
pub enum Value {
    /// See [`PortType::Image`].
    Image(Arc<Image>),
    /// See [`PortType::Mask`].
    Mask(Arc<Mask>),
    /// See [`PortType::Labels`].
    Labels(Arc<Labels>),
    /// See [`PortType::Table`].
    Table(Arc<Table>),
    /// Values of types the engine does not look into (models, configs, services).
    Opaque(PortType, Arc<dyn Any + Send + Sync>),
}

impl Value {
    /// The port type this value travels on.
    pub fn port_type(&self) -> PortType {
        match self {
            Value::Image(_) => PortType::Image,
            Value::Mask(_) => PortType::Mask,
            Value::Labels(_) => PortType::Labels,
            Value::Table(_) => PortType::Table,
            Value::Opaque(t, _) => *t,
        }
    }

    /// The grid of a volume value.
    pub fn geometry(&self) -> Option<&Geometry> {
        match self {
            Value::Image(v) => Some(v.geometry()),
            Value::Mask(v) => Some(v.geometry()),
            Value::Labels(v) => Some(v.geometry()),
            _ => None,
        }
    }

    /// Approximate size in bytes (for memory estimates and reports).
    pub fn size_bytes(&self) -> usize {
        match self {
            Value::Image(v) => match v.as_ref() {
                Image::I16(v) => v.geometry().len() * 2,
                Image::F32(v) => v.geometry().len() * 4,
            },
            Value::Mask(v) => v.words().len() * 8,
            Value::Labels(v) => v.geometry().len() * 2,
            Value::Table(t) => t.rows.len() * t.columns.len() * 16,
            Value::Opaque(..) => 0,
        }
    }

    /// A short human summary: type, grid and voxel type, or table size.
    pub fn summary(&self) -> String {
        match self {
            Value::Image(v) => format!("Image {} ({})", v.geometry().describe(), v.dtype()),
            Value::Mask(v) => format!(
                "Mask {} ({} voxels set)",
                v.geometry().describe(),
                v.count()
            ),
            Value::Labels(v) => format!("Labels {}", v.geometry().describe()),
            Value::Table(t) => format!("Table {} rows x {} columns", t.rows.len(), t.columns.len()),
            Value::Opaque(t, _) => format!("{t}"),
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}
