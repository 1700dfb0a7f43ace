//! Every WGSL kernel, assembled as the host builds it (`shaders/common.wgsl` followed by the
//! kernel's file), parses and validates with naga (no GPU needed), and the host structs and
//! constants mirrored in the shaders agree with naga's reflection of them.

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

/// Sizes of the named structs of a module, as naga lays them out.
fn struct_sizes(module: &naga::Module) -> HashMap<String, u32> {
    module
        .types
        .iter()
        .filter_map(|(_, ty)| match (&ty.name, &ty.inner) {
            (Some(name), naga::TypeInner::Struct { span, .. }) => Some((name.clone(), *span)),
            _ => None,
        })
        .collect()
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

#[test]
fn mirrored_structs_match() {
    let rust: HashMap<&str, usize> = [
        ("Dims", std::mem::size_of::<gpu::Dims>()),
        ("ColParams", std::mem::size_of::<gpu::ColParams>()),
        ("Segment", std::mem::size_of::<gpu::Segment>()),
        ("FlatPartial", std::mem::size_of::<gpu::FlatPartial>()),
        ("CoordFit", std::mem::size_of::<gpu::CoordFit>()),
        ("GramParams", std::mem::size_of::<gpu::GramParams>()),
    ]
    .into_iter()
    .collect();
    let mut seen = HashMap::new();
    for (name, src) in shader_files() {
        let module = validate(&name, &src, Capabilities::SUBGROUP).unwrap();
        for (ty, size) in struct_sizes(&module) {
            if let Some(&want) = rust.get(ty.as_str()) {
                assert_eq!(size as usize, want, "{name}: struct {ty}");
                *seen.entry(ty).or_insert(0) += 1;
            }
        }
    }
    for ty in rust.keys() {
        assert!(seen.contains_key(*ty), "no shader declares {ty}");
    }
    // Dims is the uniform of every kernel.
    assert_eq!(seen["Dims"], gpu::SHADERS.len());
}

/// common.wgsl on its own, with only the two bindings its helpers use, declares `Dims` and
/// `ColParams` with the sizes of their Rust mirrors.
#[test]
fn common_structs_match() {
    let src = format!(
        "{}\n@group(0) @binding(0) var<uniform> dims: Dims;\n\
         @group(0) @binding(1) var<storage, read> xs: array<vec4<u32>>;\n",
        common_source()
    );
    let module = validate("common", &src, Capabilities::empty()).unwrap_or_else(|e| panic!("{e}"));
    let sizes = struct_sizes(&module);
    assert_eq!(
        sizes["Dims"] as usize,
        std::mem::size_of::<gpu::Dims>(),
        "common: struct Dims"
    );
    assert_eq!(
        sizes["ColParams"] as usize,
        std::mem::size_of::<gpu::ColParams>(),
        "common: struct ColParams"
    );
    let consts = u32_constants(&module);
    assert_eq!(consts["COORD_WG"], plan::COORD_WG, "common: const COORD_WG");
    assert!(has_dtype_override(&module), "common: no `override DTYPE`");
}

#[test]
fn shared_constants_match() {
    let rust: HashMap<&str, u32> = [
        ("COORD_WG", plan::COORD_WG),
        ("FLAT_WG", plan::FLAT_WG),
        ("MEAN_FIELDS", plan::MEAN_FIELDS as u32),
        ("MOMENT_FIELDS", plan::MOMENT_FIELDS as u32),
        ("TAIL_FIELDS", plan::TAIL_FIELDS as u32),
        ("FITS_WG", gpu::FITS_WG),
        ("FITS_K_MAX", gpu::FITS_K_MAX),
        ("FIT_NONE", gpu::FIT_NONE),
        ("FIT_TIED", gpu::FIT_TIED),
        ("FIT_NO_SCALE", gpu::FIT_NO_SCALE),
        ("MC_WORDS", gpu::MC_WORDS),
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
    assert!(seen >= 18);
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
