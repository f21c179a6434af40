// kdviz.views.soft_labels' number formats in the browser, digit for digit: format_probability, format_value,
// format_metric and Python's "g". The rules (decimals, ranges, digits) come from the payload's `formats`; the
// rounding is Python's: exact decimal value of the double, ties to even (toFixed rounds ties away from zero).

// |x| = mantissa · 2^exponent exactly (mantissa a BigInt).
function exactParts(x) {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, Math.abs(x));
  const high = view.getUint32(0), low = view.getUint32(4);
  const biased = (high >>> 20) & 0x7ff;
  let mantissa = (BigInt(high & 0xfffff) << 32n) | BigInt(low);
  if (biased === 0) return [mantissa, -1074]; // subnormal
  mantissa |= 1n << 52n;
  return [mantissa, biased - 1075];
}

// round(|x| · 10^power) to an integer, ties to even, exactly.
function scaledRound(x, power) {
  const [mantissa, exponent] = exactParts(x);
  let numerator = mantissa, denominator = 1n;
  if (exponent >= 0) numerator <<= BigInt(exponent); else denominator <<= BigInt(-exponent);
  if (power >= 0) numerator *= 10n ** BigInt(power); else denominator *= 10n ** BigInt(-power);
  const quotient = numerator / denominator, twice = 2n * (numerator - quotient * denominator);
  return twice > denominator || (twice === denominator && (quotient & 1n)) ? quotient + 1n : quotient;
}

function sign(x) {
  return x < 0 || Object.is(x, -0) ? "-" : "";
}

// Python f"{x:.{decimals}f}".
export function formatFixed(x, decimals) {
  const digits = scaledRound(x, decimals).toString().padStart(decimals + 1, "0");
  const text = decimals > 0 ? `${digits.slice(0, -decimals)}.${digits.slice(-decimals)}` : digits;
  return sign(x) + text;
}

// Python f"{x:.{decimals}e}": the exponent is the one after rounding (9.999 → 1.00e+01), at least two digits.
export function formatScientific(x, decimals) {
  if (x === 0) return `${sign(x)}${formatFixed(0, decimals)}e+00`;
  let exponent = Math.floor(Math.log10(Math.abs(x))); // may be off by one: corrected below, exactly
  let digits = scaledRound(x, decimals - exponent);
  if (digits < 10n ** BigInt(decimals)) digits = scaledRound(x, decimals - --exponent);
  if (digits >= 10n ** BigInt(decimals + 1)) digits = scaledRound(x, decimals - ++exponent);
  const text = digits.toString();
  const mantissa = decimals > 0 ? `${text[0]}.${text.slice(1)}` : text;
  const power = String(Math.abs(exponent)).padStart(2, "0");
  return `${sign(x)}${mantissa}e${exponent < 0 ? "-" : "+"}${power}`;
}

function stripZeros(significand) {
  return significand.includes(".") ? significand.replace(/0+$/, "").replace(/\.$/, "") : significand;
}

// Python f"{x:.{precision}g}" (f"{x:g}" is precision 6).
export function formatG(x, precision = 6) {
  if (x === 0) return `${sign(x)}0`;
  const p = Math.max(precision, 1);
  const scientific = formatScientific(x, p - 1);
  const exponent = Number(scientific.split("e")[1]);
  if (exponent >= -4 && exponent < p) return stripZeros(formatFixed(x, p - 1 - exponent));
  const [significand, power] = scientific.split("e");
  return `${stripZeros(significand)}e${power}`;
}

function fixedRange(x, rules) {
  return rules.fixed_from <= Math.abs(x) && Math.abs(x) < rules.fixed_below;
}

// format_probability: 4 decimals down to 0.001, below that scientific (3.35e-04) so dark knowledge stays visible.
export function formatProbability(p, rules) {
  if (p === 0) return "0";
  return p >= rules.fixed_from ? formatFixed(p, rules.decimals) : formatScientific(p, rules.probability_digits);
}

// format_value: losses and gradients, 4 decimals in the usual range, scientific outside it.
export function formatValue(x, rules) {
  if (x === 0) return "0";
  return fixedRange(x, rules) ? formatFixed(x, rules.decimals) : formatScientific(x, rules.value_digits);
}

// format_metric: a loss on a tile, about six characters (8.3e-4, 1.2e+5).
export function formatMetric(x, rules) {
  if (x === 0 || fixedRange(x, rules)) return formatValue(x, rules);
  const [mantissa, exponent] = formatScientific(x, rules.metric_digits).split("e");
  const power = Number(exponent);
  return power > 0 ? `${mantissa}e+${power}` : `${mantissa}e${power}`;
}

if (typeof window !== "undefined") {
  window.kdvizFormats = { formatFixed, formatScientific, formatG, formatProbability, formatValue, formatMetric };
}
