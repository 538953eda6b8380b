// The page is complete without this script (render.js writes it at build time); the script only
// brings the stylesheet and marks the images that failed to load, so a broken asset is visible.
import "./style.css";

for (const img of document.querySelectorAll("#images img")) {
  img.addEventListener("error", () => img.classList.add("missing"));
}
