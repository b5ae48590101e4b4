// Nsight Compute's text report (ncu's default print format), as scripts/gpu/run.sh's ncu steps leave it
// in their logs, read into one record per profiled launch. ncu prints, per launch, a header
//   <demangled function> (gx, gy, gz)x(bx, by, bz), Context c, Stream s, Device d, CC x.y
// and then its sections, each a table of "Metric Name  Metric Unit  Metric Value" rows between dashed
// rules (the unit column may be empty; values may carry thousands separators or be words).
// While the program runs, ncu prints one `==PROF== Profiling "<name>"` line per launch into the same
// log, in launch order, between the program's own output: the harness's and goals.mjs's JSON rows
// (flushed after each case). A launch belongs to the first row printed after its ==PROF== line, so each
// record gets that row's `case` (null where the log does not allow it: as many ==PROF== lines as
// launches reported is required).

const HEADER = /^\s*(.+?) \((\d+), (\d+), (\d+)\)x\((\d+), (\d+), (\d+)\), Context \d+, Stream \d+/;
const ROW3 = /^\s+(\S.*?)\s{2,}(\S+)\s+(\S+)\s*$/;
const ROW2 = /^\s+(\S.*?)\s{2,}(\S+)\s*$/;
const TO_MS = { s: 1e3, second: 1e3, ms: 1, msecond: 1, us: 1e-3, usecond: 1e-3, ns: 1e-6, nsecond: 1e-6 };

// The function's own name: the first identifier followed by its template arguments or parameters
// ("void gk::(anonymous namespace)::thr_m_kernel<float, 128>(…)" → "thr_m_kernel").
export function kernelName(demangled) {
  return demangled.match(/([A-Za-z_]\w*)\s*[<(]/)?.[1] ?? demangled;
}

export function parseNcu(text) {
  const launches = [];
  const profCases = []; // per ==PROF== line, the case of the row after it
  let pending = 0; // ==PROF== lines still waiting for their row
  let cur = null;
  for (const line of text.split('\n')) {
    if (line.startsWith('==PROF== Profiling')) {
      profCases.push(null);
      pending++;
      continue;
    }
    if (line.startsWith('{')) {
      let row = null;
      try {
        row = JSON.parse(line);
      } catch {}
      if (row && typeof row.case === 'string') {
        for (let i = profCases.length - pending; i < profCases.length; i++) profCases[i] = row;
        pending = 0;
      }
      continue;
    }
    const h = line.match(HEADER);
    if (h) {
      cur = {
        kernel: kernelName(h[1]),
        grid: [Number(h[2]), Number(h[3]), Number(h[4])],
        block: [Number(h[5]), Number(h[6]), Number(h[7])],
        metrics: {},
        case: null,
        sizes: null,
      };
      launches.push(cur);
      continue;
    }
    if (!cur || /^\s*-+[\s-]*$/.test(line) || /^\s*Metric Name\s/.test(line)) continue;
    const m = line.match(ROW3) ?? line.match(ROW2);
    if (!m || /^\s*(Section:|OPT|INF|WRN)\b/.test(line)) continue;
    const [name, unit, raw] = m.length === 4 ? [m[1], m[2], m[3]] : [m[1], '', m[2]];
    const value = Number(raw.replace(/,/g, ''));
    if (!(name in cur.metrics)) cur.metrics[name] = { unit, value: Number.isNaN(value) ? raw : value };
  }
  if (profCases.length === launches.length)
    launches.forEach((l, i) => {
      l.case = profCases[i]?.case ?? null;
      l.sizes = profCases[i]?.sizes ?? null;
    });
  return launches;
}

// A time metric in milliseconds (Duration, gpu__time_duration.sum), or null.
export function metricMs(launch, name) {
  const m = launch.metrics[name];
  const k = m && TO_MS[m.unit];
  return k != null && typeof m.value === 'number' ? m.value * k : null;
}

// A metric's number, or null.
export function metric(launch, name) {
  const v = launch.metrics[name]?.value;
  return typeof v === 'number' ? v : null;
}
