//! Values that travel on graph edges, and their port types.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::mask::Mask;
use crate::table::Table;
use crate::volume::{Geometry, Image, Labels};

/// The type of a port; an edge is valid only between ports of the same type.
///
/// The four volume and table types are the engine's own (it caches, hashes and reports
/// them). Everything else is [`PortType::Opaque`]: declared as a constant by the crate
/// that owns the value (the training crate's `Config` and `Service`), so the engine
/// knows no training words; validation compares opaque types by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortType {
    /// Numeric voxels with geometry (HU for CT).
    Image,
    /// Binary voxels with geometry.
    Mask,
    /// Small-integer voxels with geometry (0 = background).
    Labels,
    /// Rows of named values.
    Table,
    /// A value the engine does not look into, declared by the crate that owns it.
    Opaque(OpaqueType),
}

/// An opaque port type: a name, unique across the registry, and how validation treats
/// an output of it that nobody reads.
///
/// Declare one as a constant next to the value type it carries:
///
/// ```
/// use voxflow_engine::value::{OpaqueType, PortType};
/// /// A configuration document (e.g. training hyperparameters).
/// pub const CONFIG: PortType = PortType::Opaque(OpaqueType::new("Config"));
/// assert_eq!(CONFIG.to_string(), "Config");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct OpaqueType {
    name: &'static str,
    runs_alone: bool,
}

impl OpaqueType {
    /// An opaque type called `name` (shown in docs and diagnostics).
    pub const fn new(name: &'static str) -> Self {
        OpaqueType {
            name,
            runs_alone: false,
        }
    }

    /// A service (e.g. a server): a node whose outputs are all of such types is meant
    /// to run alone too (it then serves in the foreground), so nobody reading it is no
    /// mistake and validation does not warn.
    pub const fn runs_alone(self) -> Self {
        OpaqueType {
            runs_alone: true,
            ..self
        }
    }

    /// The type's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

// Identity is the name (each opaque type is one constant in the crate that owns it), so
// validation checks opaque ports by name, as it checks the built-in ones.
impl PartialEq for OpaqueType {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for OpaqueType {}
impl std::hash::Hash for OpaqueType {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}
impl PartialOrd for OpaqueType {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OpaqueType {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name.cmp(other.name)
    }
}

impl PortType {
    /// The engine's own port types (opaque ones are declared by other crates).
    pub const BUILTIN: [PortType; 4] = [
        PortType::Image,
        PortType::Mask,
        PortType::Labels,
        PortType::Table,
    ];

    /// The type's name, as in graph docs and diagnostics.
    pub const fn name(&self) -> &'static str {
        match self {
            PortType::Image => "Image",
            PortType::Mask => "Mask",
            PortType::Labels => "Labels",
            PortType::Table => "Table",
            PortType::Opaque(t) => t.name,
        }
    }

    /// Whether an unread output of this type is no mistake (see
    /// [`OpaqueType::runs_alone`]).
    pub const fn runs_alone(&self) -> bool {
        matches!(self, PortType::Opaque(t) if t.runs_alone)
    }
}

impl fmt::Display for PortType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Serialized as its name (`"Image"`, `"Config"`), as before opaque types existed.
impl serde::Serialize for PortType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
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
    /// A value of an opaque port type (see [`OpaqueType`]); the `PortType` is always
    /// [`PortType::Opaque`].
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
