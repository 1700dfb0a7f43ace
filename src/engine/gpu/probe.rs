//! Adapter listing and diagnostics for `gradtail info`, and the user-facing reason given when
//! no adapter is found: a missing Vulkan loader, no driver manifest (ICD json), a container
//! started without the graphics driver capability, or `WGPU_BACKEND` excluding every adapter.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::context;

/// Directories the Vulkan loader reads ICD manifests from (Linux), after `VK_DRIVER_FILES` /
/// `VK_ICD_FILENAMES`.
const ICD_DIRS: [&str; 4] = [
    "/etc/vulkan/icd.d",
    "/usr/share/vulkan/icd.d",
    "/usr/local/share/vulkan/icd.d",
    "/usr/local/nvidia/share/vulkan/icd.d",
];

/// Directories searched for `libvulkan.so.1` besides `LD_LIBRARY_PATH`.
const LIB_DIRS: [&str; 7] = [
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/local/lib",
];

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

/// The Vulkan loader library, if one is on the usual paths.
pub fn vulkan_loader() -> Option<PathBuf> {
    let ld = env("LD_LIBRARY_PATH").unwrap_or_default();
    let found = ld
        .split(':')
        .filter(|d| !d.is_empty())
        .chain(LIB_DIRS)
        .map(|d| Path::new(d).join("libvulkan.so.1"))
        .find(|p| p.exists());
    found
}

/// Vulkan driver manifests the loader would read, and where they came from.
pub fn icd_files() -> (Vec<PathBuf>, &'static str) {
    for key in ["VK_DRIVER_FILES", "VK_ICD_FILENAMES"] {
        if let Some(v) = env(key) {
            let files = v
                .split(':')
                .filter(|f| !f.is_empty())
                .map(PathBuf::from)
                .filter(|p| p.exists())
                .collect();
            return (files, key);
        }
    }
    let mut dirs: Vec<PathBuf> = ICD_DIRS.iter().map(PathBuf::from).collect();
    if let Some(xdg) = env("XDG_DATA_DIRS") {
        dirs.extend(xdg.split(':').map(|d| Path::new(d).join("vulkan/icd.d")));
    }
    let mut files: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files.dedup();
    (files, "the standard directories")
}

/// One line per problem found with the machine's GPU setup (empty when nothing looks wrong).
pub fn diagnostics() -> Vec<String> {
    let mut out = Vec::new();
    if vulkan_loader().is_none() {
        out.push(
            "no Vulkan loader (libvulkan.so.1) on the library path: install it (Debian/Ubuntu: libvulkan1)"
                .to_owned(),
        );
    }
    let (icds, from) = icd_files();
    if icds.is_empty() {
        let what = match from {
            "VK_DRIVER_FILES" | "VK_ICD_FILENAMES" => format!(
                "{from}={} names no existing driver manifest",
                env(from).unwrap_or_default()
            ),
            _ => format!(
                "no Vulkan driver manifest (ICD json) in {}",
                ICD_DIRS[..3].join(", ")
            ),
        };
        out.push(format!(
            "{what}: install a Vulkan driver (mesa-vulkan-drivers for lavapipe, or the NVIDIA driver's Vulkan part) or point VK_DRIVER_FILES at its json"
        ));
    }
    let in_nvidia_container =
        env("NVIDIA_VISIBLE_DEVICES").is_some() || Path::new("/dev/nvidiactl").exists();
    if in_nvidia_container {
        match env("NVIDIA_DRIVER_CAPABILITIES") {
            Some(caps)
                if caps
                    .split(',')
                    .any(|c| matches!(c.trim(), "graphics" | "all")) => {}
            caps => out.push(format!(
                "NVIDIA GPU present but NVIDIA_DRIVER_CAPABILITIES={} lacks `graphics`: the container runtime then mounts no Vulkan driver; start the container with NVIDIA_DRIVER_CAPABILITIES=all (or compute,utility,graphics)",
                caps.unwrap_or_else(|| "(unset, i.e. compute,utility)".to_owned())
            )),
        }
    }
    if let Some(b) = env("WGPU_BACKEND") {
        let allowed = context::adapters_from_env();
        if allowed.is_empty() {
            let all = all_adapters();
            if !all.is_empty() {
                out.push(format!(
                    "WGPU_BACKEND={b} excludes every adapter found: {}; unset it or choose one of those backends",
                    all.iter()
                        .map(|a| {
                            let i = a.get_info();
                            format!("{} ({})", i.name, i.backend)
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    if let Some(n) = env("WGPU_ADAPTER_NAME") {
        if context::adapters_from_env().is_empty() {
            out.push(format!(
                "WGPU_ADAPTER_NAME={n} matches no adapter name; see `gradtail info` for the names"
            ));
        }
    }
    out
}

/// The reason given in `Error::NoAdapter`.
pub fn no_adapter_reason() -> String {
    let d = diagnostics();
    if d.is_empty() {
        "wgpu found no adapter, and the Vulkan loader and a driver manifest are present; run with RUST_LOG=wgpu_hal=info for the driver's own messages".to_owned()
    } else {
        d.join("; ")
    }
}

/// Every adapter of every backend, ignoring `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`.
fn all_adapters() -> Vec<wgpu::Adapter> {
    let mut found = super::quiet::quietly(|| {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: wgpu::Backends::all(),
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
    });
    found.retain(|a| a.get_info().backend != wgpu::Backend::Noop);
    found
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1 << 20) as f64)
}

/// A report of every adapter: identity, the limits and features gradtail uses, what
/// `--backend auto` would pick, and the diagnostics above.
pub fn probe_report() -> String {
    let mut s = String::new();
    let all = all_adapters();
    let chosen = context::adapters_from_env().into_iter().next();
    let _ = writeln!(s, "GPU adapters ({}):", all.len());
    for a in &all {
        let i = a.get_info();
        let l = a.limits();
        let f = a.features();
        let has = |x: wgpu::Features| if f.contains(x) { "yes" } else { "no" };
        let _ = writeln!(s, "- {} [{} / {:?}]", i.name, i.backend, i.device_type);
        let _ = writeln!(s, "    driver: {} {}", i.driver, i.driver_info);
        let _ = writeln!(
            s,
            "    max_storage_buffer_binding_size {}, max_buffer_size {}",
            mib(l.max_storage_buffer_binding_size),
            mib(l.max_buffer_size)
        );
        let _ = writeln!(
            s,
            "    max_compute_workgroups_per_dimension {}, max_compute_invocations_per_workgroup {}, max_compute_workgroup_storage_size {} B",
            l.max_compute_workgroups_per_dimension,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroup_storage_size
        );
        let _ = writeln!(
            s,
            "    SUBGROUP {} (sizes {}..{}), SHADER_F16 {}, TIMESTAMP_QUERY {}",
            has(wgpu::Features::SUBGROUP),
            i.subgroup_min_size,
            i.subgroup_max_size,
            has(wgpu::Features::SHADER_F16),
            has(wgpu::Features::TIMESTAMP_QUERY)
        );
        if i.device_type == wgpu::DeviceType::Cpu {
            let _ = writeln!(
                s,
                "    (a CPU device: correct results, but its timings are not GPU performance)"
            );
        }
    }
    let pick = match &chosen {
        Some(a) if a.get_info().device_type != wgpu::DeviceType::Cpu => {
            let i = a.get_info();
            format!("the GPU engine on {} ({})", i.name, i.backend)
        }
        Some(a) => format!(
            "the CPU engine (the best adapter under WGPU_BACKEND / WGPU_ADAPTER_NAME, {}, is a CPU device; --backend gpu would use it)",
            a.get_info().name
        ),
        None => "the CPU engine (no GPU adapter)".to_owned(),
    };
    let _ = writeln!(s, "--backend auto would use {pick}");
    let d = diagnostics();
    if !d.is_empty() {
        let _ = writeln!(s, "diagnostics:");
        for line in d {
            let _ = writeln!(s, "- {line}");
        }
    }
    s
}
