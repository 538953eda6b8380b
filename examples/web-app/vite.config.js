import { existsSync, readdirSync } from "node:fs";
import { resolve } from "node:path";
import { defineConfig, loadEnv } from "vite";
import { imageFiles, renderMachinePage } from "./src/render.js";

// The machine's values come from .env (Vite's own env loading) and images/ beside this file;
// aiolabs.nixos.webapp puts the machine's copies there before it builds.
export default defineConfig(({ mode }) => {
  const root = import.meta.dirname;
  const env = loadEnv(mode, root, "VITE_");
  const imagesDir = resolve(root, "images");
  const images = existsSync(imagesDir) ? imageFiles(readdirSync(imagesDir)) : [];
  return {
    build: {
      // Images stay files (never inlined as data: URLs), so each one can be fetched by its URL.
      assetsInlineLimit: 0,
    },
    plugins: [
      {
        name: "aiolabs-machine-page",
        transformIndexHtml: {
          // Before Vite's own HTML processing, so the <img> tags are bundled with hashed names.
          order: "pre",
          handler: (html) => renderMachinePage(html, env, images),
        },
      },
    ],
  };
});
