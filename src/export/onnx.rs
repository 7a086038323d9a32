//! A checkpoint as an ONNX graph (opset 17): the network in evaluation mode (no dropout),
//! ending in a softmax over the classes, so the output is **class probabilities**, not
//! logits.
//!
//! ```text
//! input [N, C_in, H, W] float32, intensities in [0, 1]
//!   -> Conv 3x3 + Relu (twice per node), MaxPool 2x2, ConvTranspose 2x2 stride 2,
//!      Slice (the centre crop of a skip connection), Concat (channels: skip first)
//!   -> Conv 1x1 (the head) -> Softmax(axis 1)      U-Net++: the chosen head, or Mean of
//!                                                   the Softmax of every head
//! probabilities [N, classes, H - 2 margin, W - 2 margin]
//! ```
//!
//! H and W stay symbolic: every crop of the network removes the same number of pixels
//! whatever the (valid) input size, so each is a Slice with constant starts and negative
//! ends. The valid sizes (`min + k * step`) and the margin are in the model's doc string
//! and its `metadata_props`. Parameters are initializers under the checkpoint's
//! PyTorch-style names (`enc0.conv1.weight`, ...).
//!
//! The protobuf messages come from the `onnx-protobuf` crate (types generated from the
//! official `onnx.proto`); nothing here encodes protobuf by hand.

use std::collections::HashMap;
use std::path::Path;

use onnx_protobuf::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use protobuf::MessageField;

use super::{describe, predicting_heads, read_checkpoint, Geometry};
use crate::error::{Error, Result};
use crate::model::{Arch, Heads, UNetConfig};
use crate::ops::conv2d::Padding;
use crate::train::checkpoint::{self, write_atomically, CheckpointFile};

/// The ONNX operator set the graph uses (Softmax over one axis needs 13 or newer).
pub const OPSET: i64 = 17;
/// The IR version that goes with opset 17.
const IR_VERSION: i64 = 8;
/// The graph's input and output names.
pub const INPUT: &str = "input";
pub const OUTPUT: &str = "probabilities";

/// An exported model: the encoded ONNX file and what its users need to know about it.
pub struct OnnxModel {
    pub bytes: Vec<u8>,
    pub config: UNetConfig,
    pub geometry: Geometry,
    /// The training step the checkpoint was saved at.
    pub step: u64,
    /// The model's doc string (also in the file).
    pub doc: String,
}

/// Reads the checkpoint at `checkpoint` and writes it as ONNX to `out`, atomically (a
/// temporary file in `out`'s folder, then a rename: no half-written file is left behind).
pub fn export_onnx(checkpoint: &Path, heads: Heads, out: &Path) -> Result<OnnxModel> {
    let bytes = read_checkpoint(checkpoint)?;
    let model = onnx_model(&checkpoint::parse(&bytes, checkpoint)?, heads)?;
    write_atomically(out, &model.bytes)?;
    Ok(model)
}

/// The ONNX model of a parsed checkpoint, predicting with `heads`.
pub fn onnx_model(file: &CheckpointFile, heads: Heads) -> Result<OnnxModel> {
    let config = file.config;
    heads.check(&config)?;
    let geometry = Geometry::of(&config);
    let mut graph = Builder::new(file, geometry)?;
    let input = graph.input();
    match config.arch {
        Arch::UNet => graph.unet(input)?,
        Arch::UNetPlusPlus => graph.unetpp(input, heads)?,
    }
    let doc = doc_string(&config, heads, geometry);
    let graph = graph.finish(&doc);
    let metadata = metadata(&config, heads, geometry, file.step);
    let model = ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
            ..Default::default()
        }],
        producer_name: "unet-wgpu".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        model_version: file.step as i64,
        doc_string: doc.clone(),
        graph: MessageField::some(graph),
        metadata_props: metadata
            .into_iter()
            .map(|(key, value)| StringStringEntryProto {
                key,
                value,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let bytes = model
        .write_to_bytes()
        .map_err(|e| Error::Config(format!("could not encode the ONNX model: {e}")))?;
    Ok(OnnxModel {
        bytes,
        config,
        geometry,
        step: file.step,
        doc,
    })
}

/// What a user of the file must know, in words.
fn doc_string(config: &UNetConfig, heads: Heads, g: Geometry) -> String {
    let margin = match g.margin {
        0 => "the output has the input's size".to_string(),
        m => format!(
            "the output is the input's centre, {m} pixels in from every side: \
             [N, {}, H - {}, W - {}] (mirror-pad the image by {m} pixels to predict all of it)",
            config.classes,
            2 * m,
            2 * m
        ),
    };
    format!(
        "{}, exported by unet-wgpu in evaluation mode. Input `{INPUT}`: float32 \
         [N, {}, H, W], intensities scaled to [0, 1] (8-bit values / 255, 16-bit values / \
         65535). H and W must each be {} + k * {} (k = 0, 1, 2, ...); {margin}. Output \
         `{OUTPUT}`: class probabilities (a softmax over axis 1, summing to 1 per pixel; \
         class 1 is the foreground of a two-class model), not logits.",
        describe(config, heads),
        config.in_channels,
        g.min,
        g.step,
    )
}

/// The model's `metadata_props`: the geometry and the network, for programs to read.
fn metadata(config: &UNetConfig, heads: Heads, g: Geometry, step: u64) -> Vec<(String, String)> {
    let heads_text = match (config.arch, heads.average, heads.prune) {
        (Arch::UNet, ..) => "single".to_string(),
        (_, true, _) => "average".to_string(),
        (_, false, Some(m)) => format!("pruned:{m}"),
        (_, false, None) => "last".to_string(),
    };
    [
        ("arch", config.arch.name().to_string()),
        (
            "config",
            serde_json::to_string(config).expect("config serialises"),
        ),
        ("heads", heads_text),
        ("input_min_size", g.min.to_string()),
        ("input_size_step", g.step.to_string()),
        ("output_margin", g.margin.to_string()),
        ("output", "probabilities (softmax over axis 1)".to_string()),
        (
            "input_scaling",
            "intensities in [0, 1]: 8-bit / 255, 16-bit / 65535".to_string(),
        ),
        ("checkpoint_step", step.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A feature map of the graph: its name, and its side length when the input has the
/// geometry's minimum size (crops are worked out from these; they are the same for every
/// valid input size).
#[derive(Clone)]
struct Map {
    name: String,
    side: usize,
}

/// The graph under construction.
struct Builder<'a> {
    file: &'a CheckpointFile<'a>,
    config: UNetConfig,
    geometry: Geometry,
    /// The PyTorch shape of every parameter of the network.
    shapes: HashMap<String, Vec<usize>>,
    graph: GraphProto,
}

impl<'a> Builder<'a> {
    fn new(file: &'a CheckpointFile<'a>, geometry: Geometry) -> Result<Builder<'a>> {
        let config = file.config;
        let shapes = checkpoint::expected_params(&config)
            .ok_or_else(|| Error::Config(format!("{config:?} fits no tile")))?
            .into_iter()
            .collect();
        Ok(Builder {
            file,
            config,
            geometry,
            shapes,
            graph: GraphProto {
                name: format!("unet-wgpu {}", config.arch),
                ..Default::default()
            },
        })
    }

    fn input(&mut self) -> Map {
        let c = self.config.in_channels as i64;
        self.graph
            .input
            .push(value_info(INPUT, [sym("N"), fixed(c), sym("H"), sym("W")]));
        Map {
            name: INPUT.into(),
            side: self.geometry.min,
        }
    }

    fn finish(mut self, doc: &str) -> GraphProto {
        let (k, out) = (self.config.classes as i64, self.geometry.margin);
        let (h, w) = match out {
            0 => (sym("H"), sym("W")),
            _ => (sym("H_out"), sym("W_out")),
        };
        self.graph
            .output
            .push(value_info(OUTPUT, [sym("N"), fixed(k), h, w]));
        self.graph.doc_string = doc.to_string();
        self.graph
    }

    /// The U-Net: the contracting path keeping each level's output for its skip, then the
    /// expanding path (up-conv, crop the skip, concat [skip, up], two convs), the head.
    fn unet(&mut self, input: Map) -> Result<()> {
        let depth = self.config.depth;
        let mut x = input;
        let mut skips = Vec::new();
        for level in 0..depth {
            x = self.conv_pair(&x, &format!("enc{level}"))?;
            if level + 1 < depth {
                skips.push(x.clone());
                x = self.max_pool(&x);
            }
        }
        for level in (0..depth - 1).rev() {
            let up = self.up(&x, &format!("dec{level}.up"))?;
            let cat = self.concat(&[skips[level].clone(), up], &format!("dec{level}.cat"));
            x = self.conv_pair(&cat, &format!("dec{level}"))?;
        }
        let logits = self.conv(&x, "head", false)?;
        self.softmax(&logits, OUTPUT);
        Ok(())
    }

    /// U-Net++ in the engine's order (anti-diagonals up to the pruned level), then the
    /// predicting heads on the centre of their top nodes.
    fn unetpp(&mut self, input: Map, heads: Heads) -> Result<()> {
        let depth = self.config.depth;
        let top = heads.prune.unwrap_or(depth - 1);
        let mut nodes: Vec<Vec<Map>> = vec![Vec::new(); depth];
        for diagonal in 0..=top {
            let x = match diagonal {
                0 => input.clone(),
                d => self.max_pool(&nodes[d - 1][0].clone()),
            };
            let node = self.conv_pair(&x, &format!("x{diagonal}_0"))?;
            nodes[diagonal].push(node);
            for j in 1..=diagonal {
                let i = diagonal - j;
                let name = format!("x{i}_{j}");
                let up = self.up(&nodes[i + 1][j - 1].clone(), &format!("{name}.up"))?;
                let mut parts = nodes[i].clone();
                parts.push(up);
                let cat = self.concat(&parts, &format!("{name}.cat"));
                let node = self.conv_pair(&cat, &name)?;
                nodes[i].push(node);
            }
        }
        let out_side = self.geometry.min - 2 * self.geometry.margin;
        let levels = predicting_heads(&self.config, heads);
        let mut probs = Vec::new();
        for &j in &levels {
            let x = self.crop(&nodes[0][j].clone(), out_side);
            let logits = self.conv(&x, &format!("x0_{j}.head"), false)?;
            let name = match levels.len() {
                1 => OUTPUT.to_string(),
                _ => format!("x0_{j}.probabilities"),
            };
            probs.push(self.softmax(&logits, &name));
        }
        if probs.len() > 1 {
            self.node("Mean", "heads.mean", probs, OUTPUT, vec![]);
        }
        Ok(())
    }

    /// `{node}.conv1` and `{node}.conv2`: 3x3 convs, each followed by a ReLU.
    fn conv_pair(&mut self, x: &Map, node: &str) -> Result<Map> {
        let mid = self.conv(x, &format!("{node}.conv1"), true)?;
        self.conv(&mid, &format!("{node}.conv2"), true)
    }

    /// The convolution `layer` (3x3 or 1x1, as its weight says), optionally with a ReLU.
    fn conv(&mut self, x: &Map, layer: &str, relu: bool) -> Result<Map> {
        let weight = self.initializer(&format!("{layer}.weight"))?;
        let bias = self.initializer(&format!("{layer}.bias"))?;
        let k = self.shapes[&weight][2];
        let pad = match self.config.padding {
            Padding::Same => (k - 1) / 2,
            Padding::Valid => 0,
        } as i64;
        let conv_out = match relu {
            true => format!("{layer}.conv"),
            false => layer.to_string(),
        };
        self.node(
            "Conv",
            layer,
            vec![x.name.clone(), weight, bias],
            &conv_out,
            vec![
                ints("kernel_shape", &[k as i64, k as i64]),
                ints("pads", &[pad; 4]),
                ints("strides", &[1, 1]),
            ],
        );
        let side = x.side + 2 * pad as usize - (k - 1);
        if relu {
            self.node(
                "Relu",
                &format!("{layer}.relu"),
                vec![conv_out],
                layer,
                vec![],
            );
        }
        Ok(Map {
            name: layer.to_string(),
            side,
        })
    }

    fn max_pool(&mut self, x: &Map) -> Map {
        let name = format!("{}.pool", x.name);
        self.node(
            "MaxPool",
            &name,
            vec![x.name.clone()],
            &name,
            vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])],
        );
        Map {
            name,
            side: x.side / 2,
        }
    }

    /// The 2x2 stride-2 up-convolution `layer` (weight [C_in, C_out, 2, 2], as in ONNX).
    fn up(&mut self, x: &Map, layer: &str) -> Result<Map> {
        let weight = self.initializer(&format!("{layer}.weight"))?;
        let bias = self.initializer(&format!("{layer}.bias"))?;
        self.node(
            "ConvTranspose",
            layer,
            vec![x.name.clone(), weight, bias],
            layer,
            vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])],
        );
        Ok(Map {
            name: layer.to_string(),
            side: 2 * x.side,
        })
    }

    /// The centre `side` x `side` window of `x` (at the reference size), as the engine's
    /// crop takes it: starting (diff / 2) rounded down in. A Slice with constant starts
    /// and negative ends, so it fits every valid input size; nothing when no crop is needed.
    fn crop(&mut self, x: &Map, side: usize) -> Map {
        let diff = x.side - side;
        if diff == 0 {
            return x.clone();
        }
        let (start, end) = ((diff / 2) as i64, -((diff - diff / 2) as i64));
        let name = format!("{}.crop{side}", x.name);
        if self.graph.node.iter().any(|n| n.output[0] == name) {
            return Map { name, side }; // a skip feeding several nodes of one size
        }
        let starts = self.int64_constant(&format!("crop.starts.{start}"), &[start, start]);
        let ends = self.int64_constant(&format!("crop.ends.{}", -end), &[end, end]);
        let axes = self.int64_constant("crop.axes", &[2, 3]);
        self.node(
            "Slice",
            &name,
            vec![x.name.clone(), starts, ends, axes],
            &name,
            vec![],
        );
        Map { name, side }
    }

    /// The channels of `parts`, each centre-cropped to the last one's size, in order.
    fn concat(&mut self, parts: &[Map], name: &str) -> Map {
        let side = parts.last().expect("parts").side;
        let inputs = parts.iter().map(|p| self.crop(p, side).name).collect();
        self.node("Concat", name, inputs, name, vec![int("axis", 1)]);
        Map {
            name: name.to_string(),
            side,
        }
    }

    fn softmax(&mut self, logits: &Map, out: &str) -> String {
        let name = format!("{}.softmax", logits.name);
        self.node(
            "Softmax",
            &name,
            vec![logits.name.clone()],
            out,
            vec![int("axis", 1)],
        );
        out.to_string()
    }

    fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: Vec<String>,
        output: &str,
        attribute: Vec<AttributeProto>,
    ) {
        self.graph.node.push(NodeProto {
            op_type: op.into(),
            name: name.into(),
            input: inputs,
            output: vec![output.into()],
            attribute,
            ..Default::default()
        });
    }

    /// The checkpoint's parameter `name` as an initializer of the same name.
    fn initializer(&mut self, name: &str) -> Result<String> {
        let shape = self.shapes.get(name).ok_or_else(|| {
            Error::Config(format!("the network has no parameter `{name}` (a bug)"))
        })?;
        let values = self.file.param(name)?;
        self.graph.initializer.push(TensorProto {
            name: name.into(),
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: DataType::FLOAT as i32,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        Ok(name.to_string())
    }

    /// An int64 vector initializer, added once per name.
    fn int64_constant(&mut self, name: &str, values: &[i64]) -> String {
        if !self.graph.initializer.iter().any(|t| t.name == name) {
            self.graph.initializer.push(TensorProto {
                name: name.into(),
                dims: vec![values.len() as i64],
                data_type: DataType::INT64 as i32,
                int64_data: values.to_vec(),
                ..Default::default()
            });
        }
        name.to_string()
    }
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::INTS.into(),
        ints: values.to_vec(),
        ..Default::default()
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::INT.into(),
        i: value,
        ..Default::default()
    }
}

fn sym(name: &str) -> tensor_shape_proto::Dimension {
    tensor_shape_proto::Dimension {
        value: Some(tensor_shape_proto::dimension::Value::DimParam(name.into())),
        ..Default::default()
    }
}

fn fixed(size: i64) -> tensor_shape_proto::Dimension {
    tensor_shape_proto::Dimension {
        value: Some(tensor_shape_proto::dimension::Value::DimValue(size)),
        ..Default::default()
    }
}

/// A float32 tensor's name and shape, for the graph's inputs and outputs.
fn value_info(name: &str, dims: [tensor_shape_proto::Dimension; 4]) -> ValueInfoProto {
    let tensor = type_proto::Tensor {
        elem_type: DataType::FLOAT as i32,
        shape: MessageField::some(TensorShapeProto {
            dim: dims.to_vec(),
            ..Default::default()
        }),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.into(),
        type_: MessageField::some(TypeProto {
            value: Some(type_proto::Value::TensorType(tensor)),
            ..Default::default()
        }),
        ..Default::default()
    }
}
