/**
 * Device and capabilities: which adapter and device a context runs on, the optional features
 * it turned on, and its limits, read once into a plain {@link Caps} object.
 *
 * Optional features are requested where the adapter has them, except the experimental
 * subgroup-matrix one, which is requested only when asked for (`subgroupMatrix: true`): Dawn
 * exposes it only with its `allow_unsafe_apis` toggle, which nothing else needs.
 */
import { DeviceError } from './errors.js';

/** A subgroup-matrix (tensor-core) configuration reported by the adapter. */
export interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

export interface Caps {
  features: ReadonlySet<string>;
  limits: Readonly<Record<string, number>>;
  adapter: { vendor: string; architecture: string; device: string; description: string };
  /** shader-f16 is enabled: f16 storage and arithmetic in WGSL. */
  f16: boolean;
  /** subgroups is enabled. */
  subgroups: boolean;
  subgroupMinSize: number;
  subgroupMaxSize: number;
  timestampQuery: boolean;
  /** chromium-experimental-subgroup-matrix is enabled (only when requested with `subgroupMatrix: true`). */
  subgroupMatrix: boolean;
  subgroupMatrixConfigs: SubgroupMatrixConfig[];
  /** A CPU (software) adapter such as lavapipe/llvmpipe or SwiftShader. */
  software: boolean;
}

export interface ContextOptions {
  /** Use this device as is (a browser's, or one you configured). */
  device?: GPUDevice;
  /** Request an adapter and device from this GPU (default: `navigator.gpu`). */
  gpu?: GPU;
  powerPreference?: GPUPowerPreference;
  /**
   * Request the experimental subgroup-matrix feature (tensor cores) where the adapter has it.
   * In Node this also turns on Dawn's `allow_unsafe_apis`, which the feature needs; without
   * it the toggle stays off.
   */
  subgroupMatrix?: boolean;
  /** Kept referenced for the context's lifetime (Dawn's `create()` result must outlive its devices). */
  keepAlive?: unknown;
  /** Called once when the context is destroyed (after the device). */
  onDestroy?: () => void;
  /** Called each time the context starts awaiting the GPU (Node: restarts the poll backoff's spin). */
  onWait?: () => void;
  /** Optional features to leave off even where available (e.g. to test a fallback path). */
  disableFeatures?: string[];
}

/** Features requested wherever the adapter has them. */
export const OPTIONAL_FEATURES = ['shader-f16', 'subgroups', 'timestamp-query'] as const;
/** The experimental tensor-core feature, requested only on demand (it needs unsafe APIs in Dawn). */
export const SUBGROUP_MATRIX = 'chromium-experimental-subgroup-matrix';

/** Request the best adapter and a device with the optional features and the adapter's full limits. */
export async function requestDevice(gpu: GPU, o: ContextOptions): Promise<{ adapter: GPUAdapter; device: GPUDevice }> {
  const adapter = await gpu.requestAdapter({ powerPreference: o.powerPreference ?? 'high-performance' });
  if (!adapter) {
    throw new DeviceError(
      'createContext: no WebGPU adapter found. On Linux without a GPU, run `node scripts/ensure-adapter.mjs` (installs Mesa lavapipe as root)',
    );
  }
  const disabled = new Set(o.disableFeatures ?? []);
  const wanted: string[] = [...OPTIONAL_FEATURES, ...(o.subgroupMatrix ? [SUBGROUP_MATRIX] : [])];
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f) && !disabled.has(f)) as GPUFeatureName[];
  const requiredLimits: Record<string, number> = {};
  for (const k in adapter.limits) {
    const v = (adapter.limits as unknown as Record<string, unknown>)[k];
    if (typeof v === 'number') requiredLimits[k] = v;
  }
  const device = await adapter.requestDevice({ requiredFeatures, requiredLimits, label: 'webgpu-lora' });
  return { adapter, device };
}

/** The capabilities of `device` (adapter info from the device where it has it, else the adapter). */
export function readCaps(adapter: GPUAdapter | null, device: GPUDevice): Caps {
  const info = (device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo ?? adapter?.info;
  const features = new Set<string>();
  for (const f of device.features as unknown as Iterable<string>) features.add(f);
  const limits: Record<string, number> = {};
  for (const k in device.limits) {
    const v = (device.limits as unknown as Record<string, unknown>)[k];
    if (typeof v === 'number') limits[k] = v;
  }
  const anyInfo = (info ?? {}) as unknown as Record<string, unknown>;
  const configs: SubgroupMatrixConfig[] = [];
  // Config fields are getters on Dawn's objects: copy them one by one (spreading gives {}).
  for (const c of (anyInfo.subgroupMatrixConfigs as Iterable<Record<string, unknown>> | undefined) ?? []) {
    configs.push({
      componentType: String(c.componentType),
      resultComponentType: String(c.resultComponentType),
      M: Number(c.M),
      N: Number(c.N),
      K: Number(c.K),
    });
  }
  const adapterDesc = {
    vendor: String(anyInfo.vendor ?? ''),
    architecture: String(anyInfo.architecture ?? ''),
    device: String(anyInfo.device ?? ''),
    description: String(anyInfo.description ?? ''),
  };
  const text = `${adapterDesc.vendor} ${adapterDesc.architecture} ${adapterDesc.device} ${adapterDesc.description}`.toLowerCase();
  return {
    features,
    limits,
    adapter: adapterDesc,
    f16: features.has('shader-f16'),
    subgroups: features.has('subgroups'),
    subgroupMinSize: Number(anyInfo.subgroupMinSize ?? 0),
    subgroupMaxSize: Number(anyInfo.subgroupMaxSize ?? 0),
    timestampQuery: features.has('timestamp-query'),
    subgroupMatrix: features.has(SUBGROUP_MATRIX),
    subgroupMatrixConfigs: configs,
    software: anyInfo.isFallbackAdapter === true || /llvmpipe|lavapipe|swiftshader|software|cpu/.test(text),
  };
}
