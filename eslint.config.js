'use strict';
// `npm run lint` runs this after the type check: ESLint's and typescript-eslint's recommended rules
// (the ones that need no type information; tsc already checks types).
const js = require('@eslint/js');
const { defineConfig, globalIgnores } = require('eslint/config');
const globals = require('globals');
const tseslint = require('typescript-eslint');

module.exports = defineConfig([
  // Build output, installed packages, the simulator's data and coverage reports.
  globalIgnores(['dist/', 'node_modules/', '.sim-data/', 'coverage/', '.nyc_output/']),
  {
    files: ['**/*.ts'],
    extends: [js.configs.recommended, tseslint.configs.recommended],
    rules: {
      // `const { secret: _secret, ...rest } = value` is how the code leaves a field out of a copy.
      '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true }],
    },
  },
  {
    // Node-RED's constructor-function nodes name `this` `node`, as Node-RED's own nodes and docs do;
    // any other alias of `this` is still reported.
    files: ['nodes/**/*.ts'],
    rules: {
      '@typescript-eslint/no-this-alias': ['error', { allowedNames: ['node'] }],
    },
  },
  {
    // The stand-in's web console: plain scripts run by the browser as they are, no build step.
    files: ['simulator/console-page/**/*.js'],
    extends: [js.configs.recommended],
    languageOptions: {
      sourceType: 'script',
      globals: globals.browser,
    },
  },
  {
    // The build scripts and this file: plain CommonJS run by Node.
    files: ['scripts/**/*.js', 'eslint.config.js'],
    extends: [js.configs.recommended],
    languageOptions: {
      sourceType: 'commonjs',
      globals: globals.node,
    },
  },
]);
