// Assay pages: the few behaviours that need a script. No inline scripts anywhere (the CSP
// forbids them); data for charts arrives as JSON in data attributes.
"use strict";

const PALETTE = ["#5135b5", "#3157d5", "#1a7f4b", "#c2342b", "#a15c00", "#0e7490", "#be185d"];

// <canvas data-distribution='{"labels": [...], "series": [...]}'>: every model's score
// distribution overlaid.
function drawDistribution(canvas) {
  if (canvas.dataset.drawn || typeof Chart === "undefined") return;
  const data = JSON.parse(canvas.dataset.distribution);
  canvas.dataset.drawn = "1";
  new Chart(canvas, {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: data.series.map((s, i) => ({
        label: s.name,
        data: s.values,
        backgroundColor: PALETTE[i % PALETTE.length] + "b3",
        borderColor: PALETTE[i % PALETTE.length],
        borderWidth: 1,
      })),
    },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      plugins: {
        legend: { position: "bottom" },
        tooltip: {
          callbacks: { label: (ctx) => `${ctx.dataset.label}: ${ctx.parsed.y.toFixed(1)} % of scored rows` },
        },
      },
      scales: {
        x: { title: { display: true, text: data.x_title || "score" }, grid: { display: false } },
        y: { title: { display: true, text: "% of scored rows" }, beginAtZero: true },
      },
    },
  });
}

function setWidths(root) {
  // Bars whose width comes from data (inline style attributes are refused by the CSP).
  root.querySelectorAll("[data-width]").forEach((el) => {
    el.style.width = `${Math.max(0, Math.min(100, Number(el.dataset.width)))}%`;
  });
}

function init(root) {
  root.querySelectorAll("canvas[data-distribution]").forEach(drawDistribution);
  setWidths(root);
}

document.addEventListener("DOMContentLoaded", () => init(document));
document.addEventListener("htmx:load", (event) => init(event.target));
