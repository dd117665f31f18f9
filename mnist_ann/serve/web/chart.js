// A line chart on a canvas, for curves that grow while a run trains: x from 0 to a known end, y on a fixed
// range or the range of what was added.

export class Chart {
  constructor(canvas, { yMin = null, yMax = null, percent = false } = {}) {
    this.canvas = canvas;
    this.range = { yMin, yMax };
    this.percent = percent;
    this.reset(1);
  }

  reset(xMax) {
    this.points = [];
    this.xMax = Math.max(1, xMax);
    this.draw();
  }

  add(x, y) {
    this.points.push([x, y]);
    this.draw();
  }

  draw() {
    const { canvas } = this;
    const context = canvas.getContext("2d");
    const width = canvas.width, height = canvas.height, left = 44, bottom = 20, top = 8, right = 8;
    context.clearRect(0, 0, width, height);
    const ys = this.points.map(([, y]) => y);
    let low = this.range.yMin ?? Math.min(...ys, Infinity), high = this.range.yMax ?? Math.max(...ys, -Infinity);
    if (!Number.isFinite(low) || !Number.isFinite(high)) { low = 0; high = 1; }
    if (high - low < 1e-6) low = high - Math.max(0.01, Math.abs(high) / 10);  // one value: a band below it
    const x = (value) => left + (width - left - right) * value / this.xMax;
    const y = (value) => top + (height - top - bottom) * (1 - (value - low) / (high - low));
    context.strokeStyle = "#dde1e8";
    context.fillStyle = "#5b6478";
    context.font = "11px system-ui, sans-serif";
    context.lineWidth = 1;
    for (const tick of [low, (low + high) / 2, high]) {
      context.beginPath(); context.moveTo(left, y(tick)); context.lineTo(width - right, y(tick)); context.stroke();
      context.fillText(this.percent ? `${(100 * tick).toFixed(1)}%` : tick.toFixed(2), 2, y(tick) + 4);
    }
    context.fillText("0", left, height - 5);
    const end = `${this.xMax}`;
    context.fillText(end, width - right - context.measureText(end).width, height - 5);
    context.strokeStyle = "#d9480f";
    context.lineWidth = 2;
    context.beginPath();
    this.points.forEach(([px, py], index) => (index ? context.lineTo(x(px), y(py)) : context.moveTo(x(px), y(py))));
    context.stroke();
    if (this.points.length === 1) {
      context.fillStyle = "#d9480f";
      context.fillRect(x(this.points[0][0]) - 2, y(this.points[0][1]) - 2, 4, 4);
    }
  }
}
