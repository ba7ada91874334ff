/**
 * Caches of what a dispatch needs from the device, each made once: shader modules (per
 * KernelModule, with a compile check that reports `file:line:col` diagnostics), bind group
 * layouts (per binding signature), compute pipelines (per module, entry and override
 * constants) and bind groups (per layout and bound ranges).
 */
import type { Caps } from './caps.js';
import type { DeviceErrors } from './deviceErrors.js';
import { DTypeError, KernelCompileError } from './errors.js';
import type { EntryInfo, KernelModule } from './kernel.js';

export interface PipelineEntry {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  layoutId: number;
}

/** Bind groups kept at most; past this the cache starts over (a stream of fresh buffers would grow it forever). */
const MAX_BIND_GROUPS = 4096;

export class Pipelines {
  private readonly shaderModules = new Map<number, GPUShaderModule>();
  private readonly layouts = new Map<string, { layout: GPUBindGroupLayout; pipelineLayout: GPUPipelineLayout; id: number }>();
  private readonly pipelines = new Map<string, PipelineEntry>();
  private readonly bindGroups = new Map<string, GPUBindGroup>();

  constructor(
    private readonly device: GPUDevice,
    private readonly caps: Caps,
    private readonly errors: DeviceErrors,
    private readonly stats: { pipelines: number },
  ) {}

  /** The module's GPUShaderModule; its compile errors surface at the next `sync()`/`read()` or `compile()`. */
  shaderModule(m: KernelModule): GPUShaderModule {
    let sm = this.shaderModules.get(m.id);
    if (!sm) {
      if (m.dtype === 'f16' && !this.caps.f16) throw new DTypeError(`${m.file}: the device has no shader-f16 feature; use f32`);
      sm = this.device.createShaderModule({ code: m.code, label: m.file });
      this.shaderModules.set(m.id, sm);
      this.errors.addCompileCheck(
        sm.getCompilationInfo().then((info) => {
          const errs = info.messages.filter((x) => x.type === 'error');
          if (errs.length) {
            const lines = errs.map((x) => `${m.file}:${x.lineNum}:${x.linePos}: ${x.message}`);
            throw new KernelCompileError(`${m.file} does not compile:\n${lines.join('\n')}`);
          }
        }),
      );
    }
    return sm;
  }

  private bindGroupLayout(m: KernelModule, e: EntryInfo) {
    const key = e.bindings.map((b) => `${b.binding}:${b.kind}`).join(',');
    let l = this.layouts.get(key);
    if (!l) {
      const layout = this.device.createBindGroupLayout({
        label: `${m.file}:${e.name}`,
        entries: e.bindings.map((b) => ({
          binding: b.binding,
          visibility: 4, // GPUShaderStage.COMPUTE
          buffer: { type: b.kind, hasDynamicOffset: b.kind === 'uniform' },
        })),
      });
      const pipelineLayout = this.device.createPipelineLayout({ bindGroupLayouts: [layout] });
      l = { layout, pipelineLayout, id: this.layouts.size };
      this.layouts.set(key, l);
    }
    return l;
  }

  /** The pipeline of entry `e` of `m` with these override constants. */
  pipeline(m: KernelModule, e: EntryInfo, constants: Record<string, number>): PipelineEntry {
    const ckeys = Object.keys(constants).sort();
    const key = `${m.id}|${e.name}|${ckeys.map((k) => `${k}=${constants[k]}`).join(',')}`;
    let p = this.pipelines.get(key);
    if (!p) {
      const l = this.bindGroupLayout(m, e);
      const pipeline = this.device.createComputePipeline({
        label: `${m.file}:${e.name}`,
        layout: l.pipelineLayout,
        compute: { module: this.shaderModule(m), entryPoint: e.name, constants },
      });
      p = { pipeline, layout: l.layout, layoutId: l.id };
      this.pipelines.set(key, p);
      this.stats.pipelines++;
    }
    return p;
  }

  /** The bind group for `p` with `entries`; `key` identifies the bound ranges. */
  bindGroup(p: PipelineEntry, entries: GPUBindGroupEntry[], key: string): GPUBindGroup {
    const bgKey = `${p.layoutId}|${key}`;
    let bg = this.bindGroups.get(bgKey);
    if (!bg) {
      if (this.bindGroups.size > MAX_BIND_GROUPS) this.bindGroups.clear();
      bg = this.device.createBindGroup({ layout: p.layout, entries });
      this.bindGroups.set(bgKey, bg);
    }
    return bg;
  }

  clear(): void {
    this.bindGroups.clear();
  }
}
