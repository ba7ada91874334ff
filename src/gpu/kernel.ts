/**
 * A kernel family: one WGSL source file, reflected once with `wgsl_reflect`.
 *
 * Reflection gives each compute entry point's bindings (name, group, binding,
 * storage/uniform, access) and the byte layout of its `params` uniform struct,
 * so launchers pass `{ a: tensor, params: { M, N } }` by name and nothing is
 * hand-packed. Sources declare their element type as `alias T = f32;`; the f16
 * variant of a family is the same file with `enable f16;` and `alias T = f16;`.
 */
import { WgslReflect, ResourceType } from 'wgsl_reflect/wgsl_reflect.module.js';
import { ArgumentError, DTypeError } from './errors.js';

export type DType = 'f32' | 'f16';

export type BindingKind = 'uniform' | 'storage' | 'read-only-storage';

export interface BindingInfo {
  name: string;
  group: number;
  binding: number;
  kind: BindingKind;
  /** WGSL element type of a storage array (`f32`, `f16`, `u32`, `vec4<f32>`...), for error messages. */
  elementType: string;
}

export interface UniformField {
  name: string;
  offset: number;
  /** Scalar type of the field or of its vector components. */
  scalar: 'f32' | 'u32' | 'i32';
  /** Number of components (1 for a scalar, 2–4 for a vector). */
  components: number;
}

export interface UniformLayout {
  binding: BindingInfo;
  /** Struct size in bytes as WGSL lays it out. */
  size: number;
  fields: Map<string, UniformField>;
}

export interface EntryInfo {
  name: string;
  /** Bindings of group 0 in binding order, the uniform one included. */
  bindings: BindingInfo[];
  /** The uniform struct binding, if the entry uses one (at most one per entry). */
  uniform: UniformLayout | null;
  /**
   * `@workgroup_size` per dimension: a number (a literal or a `const`), or the name of the
   * `override` constant that sizes it (set per pipeline, so no number is right for every
   * dispatch). Launchers size their grids with {@link KernelModule.workgroupSize}, which
   * resolves names from the dispatch's constants, so the WGSL alone decides the size.
   */
  workgroupSize: readonly [number | string, number | string, number | string];
}

const ALIAS_F32 = /^alias T = f32;$/m;

/** One WGSL family, reflected. Create with {@link KernelModule.get}; instances are cached by source. */
export class KernelModule {
  // Keyed by the source string itself first: V8 caches a string's hash on the string, so the
  // per-dispatch lookup does not rehash the whole WGSL source (a concatenated key did, ~20 KB).
  private static readonly cache = new Map<string, Map<string, KernelModule>>();
  private static nextId = 0;

  /** A process-unique id used in pipeline cache keys. */
  readonly id = KernelModule.nextId++;
  readonly entries = new Map<string, EntryInfo>();
  /** Override constants declared by the module, with their WGSL types. */
  readonly overrides = new Map<string, string>();
  /** Default values of override constants that size a workgroup (from wgsl_reflect's evaluation). */
  private readonly overrideSizes = new Map<string, number>();

  private constructor(
    /** File name used in messages, e.g. `matmul.wgsl` or `matmul.wgsl (f16)`. */
    readonly file: string,
    readonly code: string,
    readonly dtype: DType,
  ) {
    let reflect: WgslReflect;
    try {
      reflect = new WgslReflect(code);
    } catch (e) {
      throw new ArgumentError(`${file}: wgsl_reflect could not parse the source: ${(e as Error).message}`);
    }
    for (const o of reflect.overrides) this.overrides.set(o.name, o.type?.name ?? 'unknown');
    for (const fn of reflect.entry.compute) {
      const bindings: BindingInfo[] = [];
      let uniform: UniformLayout | null = null;
      for (const v of fn.resources) {
        if (v.group !== 0) throw new ArgumentError(`${file}: ${fn.name} uses group ${v.group}; kernels use group 0 only`);
        let kind: BindingKind;
        if (v.resourceType === ResourceType.Uniform) kind = 'uniform';
        else if (v.resourceType === ResourceType.Storage) kind = v.access === 'read' ? 'read-only-storage' : 'storage';
        else throw new ArgumentError(`${file}: ${fn.name} binding ${v.name} is not a buffer`);
        const info: BindingInfo = {
          name: v.name,
          group: v.group,
          binding: v.binding,
          kind,
          elementType: v.format ? v.format.getTypeName() : v.type.getTypeName(),
        };
        bindings.push(info);
        if (kind === 'uniform') {
          if (uniform) throw new ArgumentError(`${file}: ${fn.name} has more than one uniform binding`);
          const fields = new Map<string, UniformField>();
          for (const m of v.members ?? []) {
            const tname = m.type.name;
            const format = m.format; // the component type of a vecN, null for a scalar
            const scalar = (format?.name ?? tname) as UniformField['scalar'];
            const components = format ? Number(tname.replace(/\D/g, '')) || 1 : 1;
            if (!['f32', 'u32', 'i32'].includes(scalar)) {
              throw new ArgumentError(`${file}: ${fn.name} params field ${m.name} has type ${m.type.getTypeName()}; use f32/u32/i32 scalars or vectors`);
            }
            fields.set(m.name, { name: m.name, offset: m.offset, scalar, components });
          }
          uniform = { binding: info, size: v.size, fields };
        }
      }
      bindings.sort((a, b) => a.binding - b.binding);
      this.entries.set(fn.name, { name: fn.name, bindings, uniform, workgroupSize: this.reflectWorkgroupSize(fn) });
    }
  }

  /**
   * The reflected module for `code`, in f32 or (for sources that declare
   * `alias T = f32;`) its f16 variant.
   */
  static get(file: string, code: string, dtype: DType = 'f32'): KernelModule {
    let byCode = KernelModule.cache.get(code);
    if (!byCode) {
      byCode = new Map();
      KernelModule.cache.set(code, byCode);
    }
    const key = `${file}\u0000${dtype}`;
    let m = byCode.get(key);
    if (!m) {
      let src = code;
      if (dtype === 'f16') {
        if (!ALIAS_F32.test(code)) throw new DTypeError(`${file}: has no 'alias T = f32;' line, so it has no f16 variant`);
        src = `enable f16;\n${code.replace(ALIAS_F32, 'alias T = f16;')}`;
      }
      m = new KernelModule(dtype === 'f16' ? `${file} (f16)` : file, src, dtype);
      byCode.set(key, m);
    }
    return m;
  }

  /**
   * wgsl_reflect evaluates `@workgroup_size` with each override at its *default*, which is not
   * the size of a pipeline that sets the override: a dimension written as an override's name
   * is kept as that name, a `const` or literal as its number. (wgsl_reflect parses only names
   * and literals there; `@workgroup_size(WG * 2u)` is refused when the module is parsed.) An
   * override's default is remembered only when it is a literal: one computed from other
   * overrides (`override M = L * 2u;`) must be given in the dispatch's constants.
   */
  private reflectWorkgroupSize(fn: { name: string; workgroupSize?: number[] | null; attributes?: { name: string; value: unknown }[] | null }): EntryInfo['workgroupSize'] {
    const evaluated = fn.workgroupSize ?? [1, 1, 1];
    const attr = fn.attributes?.find((a) => a.name === 'workgroup_size')?.value;
    const written = Array.isArray(attr) ? attr.map(String) : attr === undefined || attr === null ? [] : [String(attr)];
    const dims = [0, 1, 2].map((i): number | string => {
      const name = written[i]?.trim();
      const value = evaluated[i] ?? 1;
      if (name !== undefined && this.overrides.has(name)) {
        const init = new RegExp(`override\\s+${name}\\s*(?::\\s*\\w+)?\\s*=\\s*([^;]+);`).exec(this.code)?.[1]?.trim();
        if (init !== undefined && /^\d+[ui]?$/.test(init)) this.overrideSizes.set(name, value);
        return name;
      }
      if (!Number.isInteger(value) || value < 1) throw new ArgumentError(`${this.file}: ${fn.name} has @workgroup_size(${written.join(', ')}), which reflection evaluates to ${value}`);
      return value;
    });
    return [dims[0]!, dims[1]!, dims[2]!];
  }

  /**
   * The workgroup size of `entry` for a dispatch with `constants`: dimensions sized by an
   * override take its value from `constants`, else the override's default.
   *
   * ```ts
   * const [lanes] = m.workgroupSize('lerp');                           // 64, from `const WG = 64u`
   * const [rb] = m.workgroupSize('matmul_regblock', { RB_LANES: 32 }); // 32
   * ```
   */
  workgroupSize(entry: string, constants: Record<string, number | boolean> = {}): [number, number, number] {
    const e = this.entry(entry);
    const out = e.workgroupSize.map((d) => {
      if (typeof d === 'number') return d;
      const v = constants[d] ?? this.overrideSizes.get(d);
      const n = typeof v === 'boolean' ? Number(v) : v;
      if (n === undefined) throw new ArgumentError(`${this.file}:${entry}: workgroup size override '${d}' has no literal default; give it in the constants`);
      if (!Number.isInteger(n) || n < 1) throw new ArgumentError(`${this.file}:${entry}: workgroup size override '${d}' = ${v}, expected an integer >= 1`);
      return n;
    });
    return [out[0]!, out[1]!, out[2]!];
  }

  entry(name: string): EntryInfo {
    const e = this.entries.get(name);
    if (!e) throw new ArgumentError(`${this.file}: no compute entry point '${name}' (has ${[...this.entries.keys()].join(', ')})`);
    return e;
  }

  /** Validate override constants against the module's declarations; returns them as numbers. */
  checkConstants(entry: string, constants: Record<string, number | boolean> | undefined): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(constants ?? {})) {
      if (!this.overrides.has(k)) {
        throw new ArgumentError(
          `${this.file}:${entry}: unknown override constant '${k}' (declared: ${[...this.overrides.keys()].join(', ') || 'none'})`,
        );
      }
      const n = typeof v === 'boolean' ? Number(v) : v;
      if (!Number.isFinite(n)) throw new ArgumentError(`${this.file}:${entry}: override constant '${k}' = ${v}, expected a finite number`);
      out[k] = n;
    }
    return out;
  }
}
