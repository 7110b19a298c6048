import { InvalidInput } from './errors.js';

const BINARY: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };
const DECIMAL: Record<string, number> = { n: 1e-9, u: 1e-6, m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18 };
const QUANTITY = /^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$/;

/** Parse a Kubernetes resource.Quantity ("200m", "1.5", "64Mi", "1e9") into a number of base units. */
export function parseQuantity(raw: string | number, field: string): number {
  if (typeof raw === 'number') {
    if (!Number.isFinite(raw) || raw < 0) throw new InvalidInput(`${field}: ${raw} is not a valid quantity`);
    return raw;
  }
  const m = QUANTITY.exec(String(raw).trim());
  if (!m) throw new InvalidInput(`${field}: "${raw}" is not a valid quantity`, 'use forms like 250m or 0.5 (cpu) and 64Mi or 1G (memory)');
  const base = Number(m[1]);
  const value = m[2] ? base * 10 ** Number(m[2].slice(1)) : base * (BINARY[m[3] ?? ''] ?? DECIMAL[m[3] ?? ''] ?? 1);
  if (value < 0) throw new InvalidInput(`${field}: "${raw}" must not be negative`);
  return value;
}

/** CPU quantity in millicores, rounded up like the kubelet does (1m is the smallest unit). */
export function cpuMillis(raw: string | number, field: string): number {
  return Math.ceil(parseQuantity(raw, field) * 1000 - 1e-9);
}

/** Memory quantity in bytes (rounded up to a whole byte). */
export function memoryBytes(raw: string | number, field: string): number {
  return Math.ceil(parseQuantity(raw, field) - 1e-9);
}
