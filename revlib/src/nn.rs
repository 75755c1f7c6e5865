//! Neural-network models built on dfdx (feature `nn`, on by default): a reference MLP vector
//! field whose VJPs come from dfdx's tape ([`DfdxMlp`]), the weight-tied transformer block of
//! the RevDEQ language model ([`transformer`]), the language models around it ([`lm`]), and
//! Adam/AdamW on flat parameter vectors through dfdx's kernel ([`Adam`]).
//!
//! Every dfdx call in revlib lives in this module, so a later backend change touches it alone.
//! The models are generic over dfdx's device: [`Cpu`] by default, and with feature `cuda` a
//! `Cuda` device chosen at run time ([`AnyDevice`] picks one by name).

pub mod lm;
pub mod transformer;

use crate::error::{check_len, BackendError, Error, Result};
use crate::field::{batch_size, Mlp, MlpConfig, VectorField};
use dfdx::prelude::*;
pub use dfdx::tensor::Cpu;
#[cfg(feature = "cuda")]
pub use dfdx::tensor::Cuda;

/// A dfdx device the models run on (f32 blocks, f64 states): [`Cpu`], or `Cuda` with feature
/// `cuda`.
pub trait NnDevice: Device<f32> + Device<f64> + Clone + std::fmt::Debug + 'static {}

impl<D: Device<f32> + Device<f64> + Clone + std::fmt::Debug + 'static> NnDevice for D {}

/// A backend failure of operation `op` as a revlib [`Error::Backend`].
pub(crate) fn backend<E: std::fmt::Display>(op: &'static str) -> impl FnOnce(E) -> Error {
    move |e| Error::Backend { op, source: BackendError::new(e) }
}

/// The devices revlib can run its models on, chosen at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum DeviceKind {
    /// The CPU (dfdx's `Cpu`).
    Cpu,
    /// CUDA device number `ordinal` (feature `cuda`).
    Cuda {
        /// Device index (0 for the first GPU).
        ordinal: usize,
    },
}

impl DeviceKind {
    /// Parse `cpu`, `cuda` (device 0) or `cuda:<n>`.
    ///
    /// # Errors
    /// [`Error::Parse`] for anything else.
    pub fn parse(name: &str) -> Result<Self> {
        let bad = || Error::Parse { what: "device", input: name.into(), expected: "cpu, cuda or cuda:<n>" };
        match name {
            "cpu" => Ok(DeviceKind::Cpu),
            "cuda" => Ok(DeviceKind::Cuda { ordinal: 0 }),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n.parse().map(|ordinal| DeviceKind::Cuda { ordinal }).map_err(|_| bad()),
                None => Err(bad()),
            },
        }
    }
    /// `cpu` or `cuda:<n>`.
    pub fn name(&self) -> String {
        match self {
            DeviceKind::Cpu => "cpu".into(),
            DeviceKind::Cuda { ordinal } => format!("cuda:{ordinal}"),
        }
    }
}

/// A device chosen at run time.
#[derive(Debug, Clone)]
pub enum AnyDevice {
    /// The CPU.
    Cpu(Cpu),
    /// A CUDA device and its index.
    #[cfg(feature = "cuda")]
    Cuda(Cuda, usize),
}

impl AnyDevice {
    /// Open the device `kind`, seeded with `seed` (dfdx's device-side random numbers; revlib
    /// initialises parameters on the host).
    ///
    /// # Errors
    /// [`Error::Unsupported`] for CUDA without feature `cuda`; [`Error::Backend`] if the CUDA
    /// device cannot be opened (no GPU, no driver).
    pub fn open(kind: DeviceKind, seed: u64) -> Result<Self> {
        match kind {
            DeviceKind::Cpu => Ok(AnyDevice::Cpu(Cpu::seed_from_u64(seed))),
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda { ordinal } => Cuda::try_build(ordinal, seed).map(|d| AnyDevice::Cuda(d, ordinal)).map_err(backend("opening the CUDA device")),
            #[cfg(not(feature = "cuda"))]
            DeviceKind::Cuda { .. } => Err(Error::Unsupported("a CUDA device needs revlib's feature `cuda`".into())),
        }
    }
    /// Which device this is.
    pub fn kind(&self) -> DeviceKind {
        match self {
            AnyDevice::Cpu(_) => DeviceKind::Cpu,
            #[cfg(feature = "cuda")]
            AnyDevice::Cuda(_, ordinal) => DeviceKind::Cuda { ordinal: *ordinal },
        }
    }
}

/// An MLP vector field evaluated op by op with dfdx, gradients from dfdx's reverse-mode tape.
///
/// Same parameter layout and initialisation as [`Mlp`] (which is the fast path); this one is
/// the reference the fused implementation is tested against, and the template for fields
/// built from arbitrary dfdx graphs.
#[derive(Debug, Clone)]
pub struct DfdxMlp<D: NnDevice = Cpu> {
    /// Shape and parameters (shared layout with the fused implementation).
    inner: Mlp,
    dev: D,
}

type Mat<D> = Tensor<(usize, usize), f64, D>;
type Vector<D> = Tensor<(usize,), f64, D>;

impl DfdxMlp<Cpu> {
    /// The dfdx twin of `Mlp::new(cfg, seed)` (identical parameters), on the CPU.
    ///
    /// # Errors
    /// As [`Mlp::new`].
    pub fn new(cfg: MlpConfig, seed: u64) -> Result<Self> {
        Self::on(Cpu::default(), cfg, seed)
    }
}

impl<D: NnDevice> DfdxMlp<D> {
    /// The dfdx twin of `Mlp::new(cfg, seed)` on device `dev`.
    ///
    /// # Errors
    /// As [`Mlp::new`].
    pub fn on(dev: D, cfg: MlpConfig, seed: u64) -> Result<Self> {
        Ok(Self { inner: Mlp::new(cfg, seed)?, dev })
    }

    /// Parameter tensors `(Wᵀ (in × out), b (out))` of each layer.
    fn tensors(&self) -> Vec<(Mat<D>, Vector<D>)> {
        let theta = self.inner.theta();
        let mut off = 0;
        let mut out = Vec::new();
        for (i, o) in self.inner.config().layer_sizes() {
            let w = &theta[off..off + i * o];
            let mut wt = vec![0.0; i * o];
            for r in 0..o {
                for c in 0..i {
                    wt[c * o + r] = w[r * i + c];
                }
            }
            let b = theta[off + i * o..off + (i + 1) * o].to_vec();
            off += (i + 1) * o;
            out.push((self.dev.tensor_from_vec(wt, (i, o)), self.dev.tensor_from_vec(b, (o,))));
        }
        out
    }

    fn input(&self, t: f64, y: &[f64], batch: usize) -> Mat<D> {
        let cfg = self.inner.config();
        let d = cfg.dim;
        let d_in = d + usize::from(cfg.time_input);
        let mut x = Vec::with_capacity(batch * d_in);
        for row in y.chunks_exact(d) {
            if cfg.time_input {
                x.push(t);
            }
            x.extend_from_slice(row);
        }
        self.dev.tensor_from_vec(x, (batch, d_in))
    }
}

/// `x · Wᵀ + b` then tanh on hidden layers, generic over the tape. Parameters are
/// re-taped with the input's tape type so that their gradients are recorded.
fn mlp_forward<D: NnDevice, T: Tape<f64, D> + Merge<T> + Default>(x: Tensor<(usize, usize), f64, D, T>, layers: &[(Mat<D>, Vector<D>)]) -> Tensor<(usize, usize), f64, D, T> {
    let mut h = x;
    for (l, (wt, b)) in layers.iter().enumerate() {
        let shape = (h.shape().0, wt.shape().1);
        let z = h.matmul(wt.retaped::<T>()) + b.retaped::<T>().broadcast_like::<_, Axis<0>>(&shape);
        h = if l + 1 < layers.len() { z.tanh() } else { z };
    }
    h
}

/// Vector fields are shared across threads (`Sync`), so this needs a `Sync` device (the CPU;
/// dfdx's CUDA device is not `Sync`).
impl<D: NnDevice + Sync> VectorField for DfdxMlp<D> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn n_params(&self) -> usize {
        self.inner.n_params()
    }
    fn params(&self) -> Vec<f64> {
        self.inner.params()
    }
    fn set_params(&mut self, theta: &[f64]) -> Result<()> {
        self.inner.set_params(theta)
    }
    fn eval(&self, t: f64, y: &[f64], out: &mut [f64]) -> Result<()> {
        let batch = batch_size(self.dim(), y.len())?;
        check_len("vector-field output", y.len(), out.len())?;
        let f = mlp_forward(self.input(t, y, batch), &self.tensors());
        out.copy_from_slice(&f.as_vec());
        Ok(())
    }
    fn vjp(&self, t: f64, y: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) -> Result<()> {
        let cfg = self.inner.config();
        let batch = batch_size(cfg.dim, y.len())?;
        check_len("VJP cotangent", y.len(), a.len())?;
        check_len("VJP state cotangent output", y.len(), a_y.len())?;
        check_len("VJP parameter cotangent output", self.n_params(), a_theta.len())?;
        let x = self.input(t, y, batch);
        let layers = self.tensors();
        let f = mlp_forward(x.trace(Gradients::leaky()), &layers);
        let at = self.dev.tensor_from_vec(a.to_vec(), (batch, cfg.dim));
        let g = (f * at).sum::<Rank0, _>().backward();
        let xb = g.get(&x).as_vec();
        let d_in = xb.len() / batch;
        let off = d_in - cfg.dim;
        for (dst, row) in a_y.chunks_exact_mut(cfg.dim).zip(xb.chunks_exact(d_in)) {
            dst.copy_from_slice(&row[off..]);
        }
        let mut p = 0;
        for ((i, o), (wt, b)) in cfg.layer_sizes().into_iter().zip(&layers) {
            let wg = g.get(wt).as_vec();
            for r in 0..o {
                for c in 0..i {
                    a_theta[p + r * i + c] += wg[c * o + r];
                }
            }
            for (dst, v) in a_theta[p + i * o..p + (i + 1) * o].iter_mut().zip(g.get(b).as_vec()) {
                *dst += v;
            }
            p += (i + 1) * o;
        }
        Ok(())
    }
    fn name(&self) -> String {
        format!("dfdx {}", self.inner.name())
    }
}

/// Adam / AdamW hyper-parameters (dfdx's `AdamConfig`).
pub use dfdx::optim::{AdamConfig, WeightDecay};

/// Adam (or AdamW, with `weight_decay: Some(WeightDecay::Decoupled(λ))`) on a flat parameter
/// vector, using dfdx's update kernel.
///
/// # Examples
/// ```
/// use revlib::prelude::*;
/// use revlib::nn::WeightDecay;
/// # fn main() -> revlib::Result<()> {
/// let cfg = AdamConfig { lr: 1e-2, weight_decay: Some(WeightDecay::Decoupled(1e-5)), ..Default::default() };
/// let mut opt = Adam::new(2, cfg)?;
/// let mut theta = vec![1.0, -1.0];
/// opt.step(&mut theta, &[0.5, -0.5])?;
/// assert!(theta[0] < 1.0 && theta[1] > -1.0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Adam {
    cfg: AdamConfig,
    t: i32,
    m: <Cpu as Storage<f64>>::Vec,
    v: <Cpu as Storage<f64>>::Vec,
    dev: Cpu,
}

impl Adam {
    /// An optimiser for `n` parameters.
    ///
    /// # Errors
    /// [`Error::Backend`] if dfdx cannot allocate the moment buffers.
    pub fn new(n: usize, cfg: AdamConfig) -> Result<Self> {
        let dev = Cpu::default();
        let m = dev.try_alloc_len(n).map_err(backend("allocating Adam moments"))?;
        let v = dev.try_alloc_len(n).map_err(backend("allocating Adam moments"))?;
        Ok(Self { cfg, t: 0, m, v, dev })
    }

    /// The optimiser's state (step count, first and second moments), for checkpoints.
    pub fn state(&self) -> (i32, Vec<f64>, Vec<f64>) {
        (self.t, self.m.iter().copied().collect(), self.v.iter().copied().collect())
    }

    /// Restore a state written by [`state`](Self::state).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if the moments' lengths differ from the optimiser's.
    pub fn set_state(&mut self, t: i32, m: &[f64], v: &[f64]) -> Result<()> {
        check_len("Adam first moment", self.m.len(), m.len())?;
        check_len("Adam second moment", self.v.len(), v.len())?;
        self.t = t;
        self.m.copy_from_slice(m);
        self.v.copy_from_slice(v);
        Ok(())
    }

    /// One update `theta ← theta − step(grad)`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if the lengths differ from the optimiser's.
    pub fn step(&mut self, theta: &mut [f64], grad: &[f64]) -> Result<()> {
        let n = self.m.len();
        check_len("Adam parameters", n, theta.len())?;
        check_len("Adam gradient", n, grad.len())?;
        self.t += 1;
        let mut p = self.dev.tensor_from_vec(theta.to_vec(), (n,));
        let mut g = self.dev.try_alloc_len(n).map_err(backend("allocating the gradient"))?;
        g.copy_from_slice(grad);
        self.cfg.try_update(self.t, &mut p, &mut self.m, &mut self.v, &g).map_err(backend("the Adam update"))?;
        theta.copy_from_slice(&p.as_vec());
        Ok(())
    }
}
