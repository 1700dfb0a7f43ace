//! Every WGSL kernel, assembled as the host builds it (`shaders/common.wgsl` followed by the
//! kernel's file), parses and validates with naga (no GPU needed), and the host structs and
//! constants mirrored in the shaders agree with naga's reflection of them: struct sizes, field
//! names, offsets and types, array strides, and which kernel writes which output struct.

use std::collections::HashMap;
use std::path::Path;

use gradtail::engine::gpu::{self, plan};
use gradtail::stats::fits::stable_cdf::grid;
use naga::valid::{Capabilities, ValidationFlags, Validator};

/// The file prepended to every kernel.
const COMMON: &str = "common";

/// The `.wgsl` files of `shaders/` by stem, common.wgsl included.
fn wgsl_files() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .map(|p| {
            let stem = p.file_stem().unwrap().to_str().unwrap().to_owned();
            (stem, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

fn common_source() -> String {
    let files = wgsl_files();
    let (_, src) = files
        .iter()
        .find(|(n, _)| n == COMMON)
        .expect("shaders/common.wgsl is missing");
    src.clone()
}

/// Each kernel's source as the host assembles it: common.wgsl + <kernel>.wgsl.
fn shader_files() -> Vec<(String, String)> {
    let common = common_source();
    wgsl_files()
        .into_iter()
        .filter(|(n, _)| n != COMMON)
        .map(|(n, src)| (n, format!("{common}{src}")))
        .collect()
}

fn validate(name: &str, src: &str, caps: Capabilities) -> Result<naga::Module, String> {
    let module = naga::front::wgsl::parse_str(src)
        .map_err(|e| format!("{name}: {}", e.emit_to_string(src)))?;
    Validator::new(ValidationFlags::all(), caps)
        .validate(&module)
        .map_err(|e| format!("{name}: {}", e.emit_to_string(src)))?;
    Ok(module)
}

/// u32 constants of a module by name.
fn u32_constants(module: &naga::Module) -> HashMap<String, u32> {
    module
        .constants
        .iter()
        .filter_map(|(_, c)| match module.global_expressions[c.init] {
            naga::Expression::Literal(naga::Literal::U32(v)) => Some((c.name.clone()?, v)),
            _ => None,
        })
        .collect()
}

/// Whether a module declares the `override DTYPE` the host sets per input dtype.
fn has_dtype_override(module: &naga::Module) -> bool {
    module
        .overrides
        .iter()
        .any(|(_, o)| o.name.as_deref() == Some("DTYPE"))
}

#[test]
fn every_shader_validates() {
    let files = shader_files();
    assert!(!files.is_empty(), "no shaders found");
    for (name, src) in &files {
        validate(name, src, Capabilities::SUBGROUP).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// One name per kernel: every `shaders/<name>.wgsl` is a kernel the engine builds (and the
/// engine builds no other), its pipeline is labelled `gradtail.<name>`, and the CPU engine
/// names it as the kernel its twin mirrors.
#[test]
fn one_file_per_kernel() {
    let on_disk: Vec<String> = shader_files().into_iter().map(|(n, _)| n).collect();
    let mut built: Vec<String> = gpu::SHADERS.iter().map(|(n, _)| n.to_string()).collect();
    built.sort();
    assert_eq!(
        on_disk, built,
        "shaders/ and the engine's kernel list differ"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let context = std::fs::read_to_string(root.join("src/engine/gpu/context.rs")).unwrap();
    assert!(
        context.contains("label: Some(&format!(\"gradtail.{}\", SHADERS[i].0))"),
        "pipelines are no longer labelled gradtail.<kernel>"
    );
    let cpu = std::fs::read_to_string(root.join("src/engine/cpu.rs")).unwrap();
    for name in &on_disk {
        assert!(
            cpu.contains(&format!("{name}.wgsl`")),
            "src/engine/cpu.rs names no CPU twin of shaders/{name}.wgsl"
        );
    }
}

#[test]
fn flat_blocks_without_subgroups() {
    let full = gpu::flat_source(true);
    let cut = gpu::flat_source(false);
    assert!(full.contains("fn main_subgroup"));
    assert!(!cut.contains("fn main_subgroup") && cut.contains("fn main("));
    // The cut source needs no subgroup capability; the full one does.
    validate("flat_blocks (no subgroups)", &cut, Capabilities::empty())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(validate("flat_blocks", &full, Capabilities::empty()).is_err());
}

/// A host struct's layout as Rust has it: size and, per field, name, offset and shape.
struct HostLayout {
    name: &'static str,
    size: usize,
    fields: Vec<(&'static str, usize, Shape)>,
}

/// Scalar kind, byte width and lanes of a field (1 for a scalar, 4 for a vec4 / `[T; 4]`).
type Shape = (naga::ScalarKind, u8, u32);

trait HasShape {
    const SHAPE: Shape;
}
impl HasShape for f32 {
    const SHAPE: Shape = (naga::ScalarKind::Float, 4, 1);
}
impl HasShape for u32 {
    const SHAPE: Shape = (naga::ScalarKind::Uint, 4, 1);
}
impl HasShape for i32 {
    const SHAPE: Shape = (naga::ScalarKind::Sint, 4, 1);
}
impl<T: HasShape> HasShape for [T; 4] {
    const SHAPE: Shape = (T::SHAPE.0, T::SHAPE.1, 4);
}

/// The shape of the field a projection picks (the projection is never called).
fn shape_of<S, T: HasShape>(_: impl Fn(&S) -> &T) -> Shape {
    T::SHAPE
}

/// `host_layout!(Name, [a, b, ..])`: the layout of `gpu::Name`, fields in declaration order.
macro_rules! host_layout {
    ($ty:ident, [$($field:ident),* $(,)?]) => {
        HostLayout {
            name: stringify!($ty),
            size: std::mem::size_of::<gpu::$ty>(),
            fields: vec![$((
                stringify!($field),
                std::mem::offset_of!(gpu::$ty, $field),
                shape_of(|s: &gpu::$ty| &s.$field),
            )),*],
        }
    };
}

/// Every struct mirrored between Rust and WGSL, with the kernels that must declare it
/// (empty: every kernel).
fn host_layouts() -> Vec<(HostLayout, &'static [&'static str])> {
    vec![
        (
            host_layout!(
                Dims,
                [
                    rows, groups, row_words, chunk_rows, chunks, col_wgs, grid_x, items, row0,
                    used_rows, k1, one
                ]
            ),
            &[],
        ),
        (
            host_layout!(
                ColParams,
                [shift_hi, shift_lo, centre_hi, centre_lo, pool, exp]
            ),
            &["coord_stats", "flat_blocks"],
        ),
        (host_layout!(Segment, [row, c0, c1, pad]), &["flat_blocks"]),
        (
            host_layout!(MeanPartial, [n, bad, xref, s, c, mn, mn_lo, mx, mx_lo]),
            &["coord_mean"],
        ),
        (
            host_layout!(MomentPartial, [s1, s2, s3, s4, e]),
            &["coord_stats"],
        ),
        (
            host_layout!(
                TailPartial,
                [zeros, nz, sl, sl2, ny, ly, nx, lx, bad, l0, lm]
            ),
            &["coord_stats"],
        ),
        (
            host_layout!(BlockPartial, [sx, nx, sy, ny, sm]),
            &["coord_stats"],
        ),
        (
            host_layout!(FlatPartial, [su, su_c, sl, sl_c]),
            &["flat_blocks"],
        ),
        (
            host_layout!(
                CoordFit,
                [
                    alpha, beta, scale, zeta, ad_excess, ks_gauss, ks_stable, top1_share, var_all,
                    var_half, n, status
                ]
            ),
            &["coord_fits"],
        ),
        (
            host_layout!(XminCand, [base, u, m, n, slope, in_range]),
            &["xmin_scan"],
        ),
        (
            host_layout!(
                GramParams,
                [k, tiles, pair0, pairs, cols, slice_cols, scale, pad]
            ),
            &["gram"],
        ),
    ]
}

/// The kernels' output structs: each is the element type of a `read_write` storage array the
/// kernel declares, so the kernel writes what the host reads.
const OUTPUTS: [(&str, &str); 6] = [
    ("coord_mean", "MeanPartial"),
    ("coord_stats", "MomentPartial"),
    ("coord_stats", "TailPartial"),
    ("coord_stats", "BlockPartial"),
    ("flat_blocks", "FlatPartial"),
    ("coord_fits", "CoordFit"),
];

/// Shape of a naga type, if it is a scalar or a vector.
fn naga_shape(inner: &naga::TypeInner) -> Option<Shape> {
    match *inner {
        naga::TypeInner::Scalar(s) => Some((s.kind, s.width, 1)),
        naga::TypeInner::Vector { size, scalar } => Some((scalar.kind, scalar.width, size as u32)),
        _ => None,
    }
}

/// Compares `host` with the WGSL struct of its name in `module`: size, field names in order,
/// offsets, shapes, and the stride of every array of it. `None` when the module declares no
/// such struct.
fn compare_layout(module: &naga::Module, host: &HostLayout) -> Option<Result<(), String>> {
    let (handle, ty) = module
        .types
        .iter()
        .find(|(_, t)| t.name.as_deref() == Some(host.name))?;
    let naga::TypeInner::Struct { members, span } = &ty.inner else {
        return Some(Err(format!("{} is not a struct", host.name)));
    };
    let name = host.name;
    let check = || {
        if *span as usize != host.size {
            return Err(format!("{name}: WGSL size {span}, Rust {}", host.size));
        }
        let wgsl: Vec<_> = members
            .iter()
            .map(|m| {
                let shape = naga_shape(&module.types[m.ty].inner);
                (m.name.as_deref().unwrap_or("?"), m.offset as usize, shape)
            })
            .collect();
        let rust: Vec<_> = host
            .fields
            .iter()
            .map(|&(n, o, s)| (n, o, Some(s)))
            .collect();
        if wgsl != rust {
            return Err(format!(
                "{name}: fields (name, offset, shape) differ\n  WGSL {wgsl:?}\n  Rust {rust:?}"
            ));
        }
        for (_, t) in module.types.iter() {
            if let naga::TypeInner::Array { base, stride, .. } = t.inner {
                if base == handle && stride as usize != host.size {
                    return Err(format!("{name}: array stride {stride}, Rust {}", host.size));
                }
            }
        }
        Ok(())
    };
    Some(check())
}

/// Every host struct mirrored in WGSL has the layout of its Rust twin, in every kernel that
/// declares it, and the kernels that use it declare it.
#[test]
fn mirrored_structs_match() {
    let modules: Vec<(String, naga::Module)> = shader_files()
        .into_iter()
        .map(|(name, src)| {
            let module = validate(&name, &src, Capabilities::SUBGROUP).unwrap();
            (name, module)
        })
        .collect();
    for (host, kernels) in host_layouts() {
        let mut declared = Vec::new();
        for (name, module) in &modules {
            if let Some(result) = compare_layout(module, &host) {
                result.unwrap_or_else(|e| panic!("{name}: {e}"));
                declared.push(name.as_str());
            }
        }
        if kernels.is_empty() {
            assert_eq!(
                declared.len(),
                modules.len(),
                "{} not in every kernel",
                host.name
            );
        }
        for k in kernels {
            assert!(declared.contains(k), "{k} does not declare {}", host.name);
        }
    }
}

/// Each output struct is the element type of a `read_write` storage array of its kernel: the
/// kernel writes what the host reads.
#[test]
fn kernels_write_their_output_structs() {
    for (kernel, ty) in OUTPUTS {
        let (_, src) = shader_files()
            .into_iter()
            .find(|(n, _)| n == kernel)
            .unwrap();
        let module = validate(kernel, &src, Capabilities::SUBGROUP).unwrap();
        let written = module.global_variables.iter().any(|(_, g)| {
            let store = matches!(g.space, naga::AddressSpace::Storage { access }
                if access.contains(naga::StorageAccess::STORE));
            let of_ty = match module.types[g.ty].inner {
                naga::TypeInner::Array { base, .. } => {
                    module.types[base].name.as_deref() == Some(ty)
                }
                _ => false,
            };
            store && of_ty
        });
        assert!(written, "{kernel} declares no read_write array<{ty}>");
    }
}

/// The comparison can fail: a Rust layout with two fields swapped, a field of another type or
/// a missing field is caught.
#[test]
fn a_wrong_layout_is_caught() {
    let (_, src) = shader_files()
        .into_iter()
        .find(|(n, _)| n == "coord_stats")
        .unwrap();
    let module = validate("coord_stats", &src, Capabilities::SUBGROUP).unwrap();
    let right = || {
        host_layout!(
            TailPartial,
            [zeros, nz, sl, sl2, ny, ly, nx, lx, bad, l0, lm]
        )
    };
    assert_eq!(compare_layout(&module, &right()), Some(Ok(())));
    let mut swapped = right();
    swapped.fields.swap(2, 3);
    let mut retyped = right();
    retyped.fields[0].2 .0 = naga::ScalarKind::Float;
    let mut short = right();
    short.fields.pop();
    let mut resized = right();
    resized.size += 16;
    for wrong in [swapped, retyped, short, resized] {
        assert!(matches!(compare_layout(&module, &wrong), Some(Err(_))));
    }
}

/// common.wgsl on its own, with only the two bindings its helpers use, declares `Dims` and
/// `ColParams` with the layout of their Rust mirrors.
#[test]
fn common_structs_match() {
    let src = format!(
        "{}\n@group(0) @binding(0) var<uniform> dims: Dims;\n\
         @group(0) @binding(1) var<storage, read> xs: array<vec4<u32>>;\n",
        common_source()
    );
    let module = validate("common", &src, Capabilities::empty()).unwrap_or_else(|e| panic!("{e}"));
    for (host, _) in host_layouts() {
        if ["Dims", "ColParams"].contains(&host.name) {
            let result = compare_layout(&module, &host).expect("declared in common.wgsl");
            result.unwrap_or_else(|e| panic!("common: {e}"));
        }
    }
    let consts = u32_constants(&module);
    assert_eq!(consts["COORD_WG"], plan::COORD_WG, "common: const COORD_WG");
    assert!(has_dtype_override(&module), "common: no `override DTYPE`");
}

#[test]
fn shared_constants_match() {
    let rust: HashMap<&str, u32> = [
        ("COORD_WG", plan::COORD_WG),
        ("FLAT_WG", plan::FLAT_WG),
        ("FITS_WG", gpu::FITS_WG),
        ("FITS_K_MAX", gpu::FITS_K_MAX),
        ("FIT_NONE", gpu::FIT_NONE),
        ("FIT_TIED", gpu::FIT_TIED),
        ("FIT_NO_SCALE", gpu::FIT_NO_SCALE),
        ("MC_WORDS", gpu::MC_WORDS),
        ("XMIN_WG", gpu::XMIN_WG),
        ("GRAM_TILE", gpu::GRAM_TILE),
        ("GRAM_DEPTH", gpu::GRAM_DEPTH),
        ("GRAM_CHUNK", gpu::GRAM_CHUNK),
        ("GRAM_WG", gpu::GRAM_WG),
        ("STABLE_ALPHA_N", grid::ALPHA_N as u32),
        ("STABLE_BETA_N", grid::BETA_N as u32),
        ("STABLE_U_N", grid::U_N as u32),
    ]
    .into_iter()
    .collect();
    let mut seen = 0;
    for (name, src) in shader_files() {
        let module = validate(&name, &src, Capabilities::SUBGROUP).unwrap();
        for (k, v) in u32_constants(&module) {
            if let Some(&want) = rust.get(k.as_str()) {
                assert_eq!(v, want, "{name}: const {k}");
                seen += 1;
            }
        }
        assert!(has_dtype_override(&module), "{name}: no `override DTYPE`");
    }
    assert!(seen >= rust.len());
}

/// f32 constants of a module by name.
fn f32_constants(module: &naga::Module) -> HashMap<String, f32> {
    module
        .constants
        .iter()
        .filter_map(|(_, c)| match module.global_expressions[c.init] {
            naga::Expression::Literal(naga::Literal::F32(v)) => Some((c.name.clone()?, v)),
            _ => None,
        })
        .collect()
}

/// `coord_fits` reads McCulloch's tables and the stable CDF table at the host's layout: its
/// offsets end where `mcculloch::table_words` does, its grid is the table's grid, and its
/// workgroup arrays add up to the storage the host checks the adapter for.
#[test]
fn coord_fits_mirrors_its_tables() {
    let (_, src) = shader_files()
        .into_iter()
        .find(|(n, _)| n == "coord_fits")
        .unwrap();
    let module = validate("coord_fits", &src, Capabilities::empty()).unwrap();
    let u = u32_constants(&module);
    let words = gradtail::stats::fits::mcculloch::table_words();
    assert_eq!(words.len(), gpu::MC_WORDS as usize);
    assert_eq!(u["MC_PHI5"] + 16 * 5, u["MC_WORDS"]);
    assert_eq!(words[u["MC_NU_ALPHA"] as usize], 2.439);
    assert_eq!(words[u["MC_PSI1"] as usize + 7], 1.916);
    assert_eq!(words[u["MC_PHI5"] as usize + 5 + 1], -0.078);
    let f = f32_constants(&module);
    for (name, want) in [
        ("STABLE_ALPHA_MIN", grid::ALPHA_MIN),
        ("STABLE_ALPHA_STEP", grid::ALPHA_STEP),
        ("STABLE_BETA_STEP", grid::BETA_STEP),
        ("STABLE_Z_SCALE", grid::Z_SCALE),
        ("STABLE_U_MAX", grid::U_MAX),
    ] {
        assert_eq!(f[name], want as f32, "coord_fits: const {name}");
    }
    let edge = grid::Z_SCALE * grid::U_MAX.sinh();
    assert!((f64::from(f["STABLE_Z_EDGE"]) - edge).abs() < 1e-3 * edge);
    let bytes: u32 = module
        .global_variables
        .iter()
        .filter(|(_, g)| g.space == naga::AddressSpace::WorkGroup)
        .map(|(_, g)| module.types[g.ty].inner.size(module.to_ctx()))
        .sum();
    assert_eq!(bytes, gpu::FITS_WG_BYTES);
}

/// `gram`'s staging arrays add up to the storage the host declares, hold GRAM_DEPTH
/// coordinates of a GRAM_TILE-row tile each, and its threads (16 × 16, 4 × 4 outputs each)
/// cover one output tile; a chunk is whole staging steps.
#[test]
fn gram_tiles_add_up() {
    let (_, src) = shader_files()
        .into_iter()
        .find(|(n, _)| n == "gram")
        .unwrap();
    let module = validate("gram", &src, Capabilities::empty()).unwrap();
    let arrays: Vec<u32> = module
        .global_variables
        .iter()
        .filter(|(_, g)| g.space == naga::AddressSpace::WorkGroup)
        .map(|(_, g)| module.types[g.ty].inner.size(module.to_ctx()))
        .collect();
    assert_eq!(arrays.len(), 2);
    assert!(arrays
        .iter()
        .all(|&b| b == 4 * gpu::GRAM_DEPTH * gpu::GRAM_TILE));
    assert_eq!(arrays.iter().sum::<u32>(), gpu::GRAM_WG_BYTES);
    assert_eq!(gpu::GRAM_WG * 16, gpu::GRAM_TILE * gpu::GRAM_TILE);
    assert_eq!(gpu::GRAM_WG, 16 * 16);
    // One load4 (4 coordinates) per thread and row tile fills a staging step.
    assert_eq!(gpu::GRAM_WG * 4, gpu::GRAM_TILE * gpu::GRAM_DEPTH);
    assert!(gpu::GRAM_CHUNK.is_multiple_of(gpu::GRAM_DEPTH));
}
