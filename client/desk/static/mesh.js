// A 3D scan preview on a 2D canvas: the SDM1 payload of client/desk/mesh.py.
//
// No WebGL (the desk must work in a browser without a GPU) and no libraries
// (strict CSP, works offline): orthographic projection, flat shading from each
// triangle's normal under one fixed light, triangles painted back to front.
// Rotate by dragging, or with the arrow keys when the canvas has focus (the
// caller gives it tabindex=0 and an aria-label).
//
// Payload, little endian: "SDM1", uint32 n, n*9 float32 corners, n*3 float32 normals.

const LIGHT = normalise([0.4, 0.5, 1.0]);
const STEP = Math.PI / 24; // one arrow key press

function normalise(v) {
  const l = Math.hypot(v[0], v[1], v[2]) || 1;
  return [v[0] / l, v[1] / l, v[2] / l];
}

export function parseMesh(arrayBuffer) {
  const view = new DataView(arrayBuffer);
  if (arrayBuffer.byteLength < 8) throw new Error("mesh preview: payload too short");
  const magic = String.fromCharCode(view.getUint8(0), view.getUint8(1), view.getUint8(2),
    view.getUint8(3));
  if (magic !== "SDM1") throw new Error("mesh preview: not an SDM1 payload");
  const n = view.getUint32(4, true);
  if (arrayBuffer.byteLength !== 8 + n * 48) throw new Error("mesh preview: wrong length");
  const corners = new Float32Array(n * 9);
  const normals = new Float32Array(n * 3);
  for (let i = 0; i < n * 9; i++) corners[i] = view.getFloat32(8 + i * 4, true);
  for (let i = 0; i < n * 3; i++) normals[i] = view.getFloat32(8 + n * 36 + i * 4, true);
  return { n, corners, normals };
}

// Rotation about y (yaw) then x (pitch), as a 3x3 row-major matrix.
function rotation(yaw, pitch) {
  const cy = Math.cos(yaw), sy = Math.sin(yaw), cp = Math.cos(pitch), sp = Math.sin(pitch);
  return [cy, 0, sy, sp * sy, cp, -sp * cy, -cp * sy, sp, cp * cy];
}

function apply(m, x, y, z) {
  return [m[0] * x + m[1] * y + m[2] * z, m[3] * x + m[4] * y + m[5] * z,
    m[6] * x + m[7] * y + m[8] * z];
}

export function showMesh(canvas, arrayBuffer) {
  const mesh = parseMesh(arrayBuffer);
  const ctx = canvas.getContext("2d");
  const state = { yaw: 0.5, pitch: -0.4 };
  const order = new Uint32Array(mesh.n);
  const depth = new Float32Array(mesh.n);
  const screen = new Float32Array(mesh.n * 6);
  const shade = new Float32Array(mesh.n);

  function draw() {
    const w = canvas.width, h = canvas.height;
    // Coordinates are within the unit cube around 0: its diagonal (sqrt 3) fits
    // the canvas whichever way the scan is turned.
    const scale = (0.95 * Math.min(w, h)) / Math.sqrt(3);
    const m = rotation(state.yaw, state.pitch);
    ctx.clearRect(0, 0, w, h);
    for (let t = 0; t < mesh.n; t++) {
      let z = 0;
      for (let c = 0; c < 3; c++) {
        const k = t * 9 + c * 3;
        const p = apply(m, mesh.corners[k], mesh.corners[k + 1], mesh.corners[k + 2]);
        screen[t * 6 + c * 2] = w / 2 + p[0] * scale;
        screen[t * 6 + c * 2 + 1] = h / 2 - p[1] * scale;
        z += p[2];
      }
      depth[t] = z;
      order[t] = t;
      const q = apply(m, mesh.normals[t * 3], mesh.normals[t * 3 + 1], mesh.normals[t * 3 + 2]);
      // Two-sided: a scan's inside faces the viewer as often as its outside.
      const lambert = Math.abs(q[0] * LIGHT[0] + q[1] * LIGHT[1] + q[2] * LIGHT[2]);
      shade[t] = 0.25 + 0.75 * lambert;
    }
    order.sort((a, b) => depth[a] - depth[b]); // far first: painter's algorithm
    for (let i = 0; i < mesh.n; i++) {
      const t = order[i];
      const g = Math.round(70 + 170 * shade[t]);
      ctx.fillStyle = `rgb(${g}, ${g}, ${Math.min(255, g + 12)})`;
      ctx.strokeStyle = ctx.fillStyle; // hides the hairline seams between triangles
      ctx.beginPath();
      ctx.moveTo(screen[t * 6], screen[t * 6 + 1]);
      ctx.lineTo(screen[t * 6 + 2], screen[t * 6 + 3]);
      ctx.lineTo(screen[t * 6 + 4], screen[t * 6 + 5]);
      ctx.closePath();
      ctx.fill();
      ctx.stroke();
    }
  }

  let drag = null;
  canvas.addEventListener("pointerdown", (e) => {
    drag = { x: e.clientX, y: e.clientY };
    canvas.setPointerCapture(e.pointerId);
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drag) return;
    state.yaw += (e.clientX - drag.x) * 0.01;
    state.pitch += (e.clientY - drag.y) * 0.01;
    drag = { x: e.clientX, y: e.clientY };
    draw();
  });
  const stop = () => { drag = null; };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);
  canvas.addEventListener("keydown", (e) => {
    const turns = { ArrowLeft: [-STEP, 0], ArrowRight: [STEP, 0], ArrowUp: [0, -STEP],
      ArrowDown: [0, STEP] };
    const turn = turns[e.key];
    if (!turn) return;
    e.preventDefault(); // the page does not scroll while the scan turns
    state.yaw += turn[0];
    state.pitch += turn[1];
    draw();
  });
  canvas.style.touchAction = "none"; // a drag on a touch screen turns the scan
  draw();
  return draw;
}
