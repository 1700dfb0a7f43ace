//! The outcome of one run, as Python sees it: the summary records, the per-coordinate maps
//! as numpy arrays, and the command line's outputs written on request.

use std::path::PathBuf;

use numpy::{PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use gradtail::analyze::structure::StructureOptions;
use gradtail::analyze::{Analysis, Center};
use gradtail::engine::EngineInfo;
use gradtail::input::{Dtype, Skipped};
use gradtail::report::{print_table, CoordsWriter, RunReport, Staging};
use gradtail::stats::{CoordTable, Stat};

use crate::py_err;

/// What [`crate::run`] produced, with what `summary.json` records about how.
pub struct Run {
    pub analysis: Analysis,
    /// Every tensor's whole per-coordinate table, where the analysis kept only a sample.
    pub whole: Option<Vec<CoordTable>>,
    pub engine: EngineInfo,
    pub center: Center,
    pub block: Option<usize>,
    pub fits: bool,
    pub structure: StructureOptions,
    pub elapsed_s: f64,
    pub skipped: Vec<Skipped>,
}

impl Run {
    fn report(&self) -> RunReport<'_> {
        RunReport {
            analysis: &self.analysis,
            engine: &self.engine,
            center: &self.center,
            block: self.block,
            backend: self.engine.engine,
            fits: self.fits,
            structure: &self.structure,
            elapsed_s: self.elapsed_s,
            skipped: &self.skipped,
            bad_files: &[],
        }
    }

    /// Each tensor's name, shape and whole per-coordinate table.
    fn tables(&self) -> impl Iterator<Item = (&str, &[usize], &CoordTable)> {
        self.analysis.tensors.iter().enumerate().map(|(i, t)| {
            let table = self.whole.as_ref().map_or(&t.coords, |w| &w[i]);
            (t.meta.name.as_str(), t.meta.shape.as_slice(), table)
        })
    }
}

/// One finished analysis (wrapped by `gradtail.Result`).
#[pyclass(frozen, module = "gradtail._native")]
pub struct NativeResult {
    run: Run,
}

impl NativeResult {
    pub fn new(run: Run) -> Self {
        NativeResult { run }
    }
}

#[pymethods]
impl NativeResult {
    /// The text of `summary.json`.
    fn summary_json(&self) -> PyResult<String> {
        self.run.report().summary_json().map_err(py_err)
    }

    /// Tensor name → statistic → float64 array shaped like the tensor (one sample of it).
    fn coords<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for (name, shape, table) in self.run.tables() {
            let maps = PyDict::new(py);
            for (stat, values) in table.iter() {
                let array = PyArray1::from_slice(py, values).reshape(shape)?;
                maps.set_item(stat, array)?;
            }
            out.set_item(name, maps)?;
        }
        Ok(out)
    }

    /// The terminal table `gradtail analyze` prints.
    fn table(&self) -> PyResult<String> {
        let mut text = Vec::new();
        print_table(&self.run.analysis, &mut text)
            .map_err(|e| pyo3::exceptions::PyOSError::new_err(e.to_string()))?;
        Ok(String::from_utf8_lossy(&text).into_owned())
    }

    /// Writes report.html, summary.json, tensors.csv and coords.safetensors (float32) into
    /// `out`, as `gradtail analyze --out` does: all of them or none.
    fn save(&self, py: Python<'_>, out: PathBuf) -> PyResult<()> {
        py.detach(|| {
            let staging = Staging::new(&out)?;
            let layout: Vec<(String, Vec<usize>)> = self
                .run
                .tables()
                .map(|(name, shape, _)| (name.to_owned(), shape.to_vec()))
                .collect();
            let maps = Stat::maps(self.run.fits, self.run.structure.powerlaw_coords);
            let path = staging.path().join("coords.safetensors");
            let coords = CoordsWriter::create(&path, &layout, maps, Dtype::F32)?;
            for (name, _, table) in self.run.tables() {
                coords.write(name, table)?;
            }
            coords.finish()?;
            self.run.report().write(&staging)?;
            staging.publish()
        })
        .map_err(py_err)
    }
}
