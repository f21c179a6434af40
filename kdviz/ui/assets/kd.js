// kdviz.core.kd in the browser: the same functions, camelCase names, the same stable log-space path.
// Python stays the definition; tests/test_soft_labels_js.py pins the two together (to 1e-9 relative).
// Hinton, Vinyals & Dean 2015, §2: softmax at a temperature T, and T² · KL(teacher ‖ student).

export function checkTemperature(temperature) {
  const value = Number(temperature);
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(`temperature must be a finite number > 0, got ${temperature}`);
  }
  return value;
}

export function checkAlpha(alpha) {
  const value = Number(alpha);
  if (!(value >= 0 && value <= 1)) throw new RangeError(`alpha must be in [0, 1], got ${alpha}`);
  return value;
}

// numpy's pairwise summation for a contiguous vector (numpy/_core/src/umath/loops_utils.h.src): numbers are
// added in the same order as np.sum adds them, so the two agree to the last bit wherever exp and log do.
function pairwiseSum(values, start = 0, n = values.length) {
  if (n < 8) {
    let sum = 0.0;
    for (let i = start; i < start + n; i++) sum += values[i];
    return sum;
  }
  if (n <= 128) {
    const r = values.slice(start, start + 8);
    let i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (let k = 0; k < 8; k++) r[k] += values[start + i + k];
    }
    let sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; i++) sum += values[start + i];
    return sum;
  }
  let half = Math.floor(n / 2);
  half -= half % 8;
  return pairwiseSum(values, start, half) + pairwiseSum(values, start + half, n - half);
}

export function logSoftmax(logits, temperature = 1.0) {
  const t = checkTemperature(temperature);
  const scaled = logits.map((z) => z / t);
  const max = Math.max(...scaled);
  const shifted = scaled.map((v) => v - max); // the largest entry becomes 0: exp never overflows
  const logSum = Math.log(pairwiseSum(shifted.map(Math.exp)));
  return shifted.map((v) => v - logSum);
}

export function softmax(logits, temperature = 1.0) {
  return logSoftmax(logits, temperature).map(Math.exp);
}

export function entropy(logits, temperature = 1.0) {
  const logP = logSoftmax(logits, temperature);
  return -pairwiseSum(logP.map((l) => Math.exp(l) * l)); // 0 · log 0 counts as 0: exp(l) is 0, l is finite
}

function checkSameShape(a, b) {
  if (a.length !== b.length) {
    throw new RangeError(`teacher and student logits must have the same shape, got (${a.length},) and (${b.length},)`);
  }
}

export function klDivergence(teacher, student, temperature = 1.0) {
  const logP = logSoftmax(teacher, temperature);
  const logQ = logSoftmax(student, temperature);
  checkSameShape(logP, logQ);
  return Math.max(pairwiseSum(logP.map((l, i) => Math.exp(l) * (l - logQ[i]))), 0.0); // rounding can dip below 0
}

export function softCrossEntropy(teacher, student, temperature = 1.0) {
  const logP = logSoftmax(teacher, temperature);
  const logQ = logSoftmax(student, temperature);
  checkSameShape(logP, logQ);
  return -pairwiseSum(logP.map((l, i) => Math.exp(l) * logQ[i]));
}

export function hardCrossEntropy(student, label) {
  const logQ = logSoftmax(student, 1.0);
  if (!(Number.isInteger(label) && label >= 0 && label < logQ.length)) {
    throw new RangeError(`label must be a class index in [0, ${logQ.length - 1}], got ${label}`);
  }
  return -logQ[label];
}

// T (q - p) with scaled (the gradient of T² · KL on the student's logits), (q - p) / T without (Hinton eq. 2).
export function softGradient(teacher, student, temperature = 1.0, scaled = true) {
  const t = checkTemperature(temperature);
  const p = softmax(teacher, t);
  const q = softmax(student, t);
  checkSameShape(p, q);
  const factor = scaled ? t : 1.0 / t;
  return q.map((qi, i) => factor * (qi - p[i]));
}

export function lossTerms(teacher, student, label, temperature, alpha) {
  const t = checkTemperature(temperature);
  const a = checkAlpha(alpha);
  const kl = klDivergence(teacher, student, t);
  const hard = hardCrossEntropy(student, label);
  const soft = t * t * kl;
  return {
    hard_cross_entropy: hard,
    kl,
    t2_kl: soft,
    soft_cross_entropy: softCrossEntropy(teacher, student, t),
    teacher_entropy: entropy(teacher, t),
    total: a * soft + (1 - a) * hard,
  };
}

if (typeof window !== "undefined") {
  window.kdvizKD = {
    checkTemperature, checkAlpha, logSoftmax, softmax, entropy, klDivergence, softCrossEntropy, hardCrossEntropy,
    softGradient, lossTerms,
  };
}
